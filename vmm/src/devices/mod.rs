//! The devices the guest reaches through port I/O, one file each, and the virtio disks it
//! reaches through MMIO (`virtio/`).

pub mod console_port;
pub mod newlines;
pub mod serial;
pub mod shutdown_port;
pub mod virtio;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use console_port::ConsolePort;
pub use serial::{new_serial, Console, InputStatus, SerialDevice, SerialInput};
pub use shutdown_port::ShutdownPort;

/// Everything a VM exit may be routed to.
pub struct Devices {
    pub serial: Arc<Mutex<SerialDevice>>,
    pub shutdown_port: ShutdownPort,
    pub input_status: InputStatus,
    pub console: ConsolePort,
    /// The `--disk` devices, disk 0 first.
    pub disks: Vec<virtio::DiskPort>,
}

/// Locks the UART, shared by the vCPU thread (the guest's port I/O), the event loop (stdin,
/// the API socket) and the main thread (the end of a run). If a thread panicked while holding
/// it, the others go on with the UART as that thread left it (registers and a FIFO, between
/// two byte accesses) rather than panic in turn: one thread's panic is reported once, as that
/// thread's failure, instead of cascading through every thread that writes or reads a byte.
pub fn lock_serial(serial: &Mutex<SerialDevice>) -> MutexGuard<'_, SerialDevice> {
    serial.lock().unwrap_or_else(PoisonError::into_inner)
}
