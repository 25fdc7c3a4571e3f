//! The devices the guest reaches through port I/O, one file each.

pub mod console_port;
pub mod exit_port;
pub mod newlines;
pub mod serial;

use std::sync::{Arc, Mutex};

pub use console_port::ConsolePort;
pub use exit_port::ExitPort;
pub use serial::{new_serial, Console, InputStatus, SerialDevice, SerialInput};

/// Everything a VM exit may be routed to.
pub struct Devices {
    pub serial: Arc<Mutex<SerialDevice>>,
    pub exit_port: ExitPort,
    pub input_status: InputStatus,
    pub console: ConsolePort,
}
