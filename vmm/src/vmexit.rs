//! What each VM exit means: a pure `handle_vmexit(exit, devices) -> Action`, which unit tests
//! feed synthetic exits.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use kvm_ioctls::VcpuExit;
use lde_abi::ports::{
    BENCH_PORT, CONSOLE_PORT, INPUT_ENDED, INPUT_OPEN, INPUT_STATUS_PORT, MILESTONE_PORT, SERIAL_PORT, SERIAL_PORT_SIZE,
};

use crate::devices::shutdown_port::ShutdownRequest;
use crate::devices::virtio::{disk_at, lock};
use crate::devices::{lock_serial, Devices, ShutdownPort};

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Re-enter the guest.
    Continue,
    /// The guest shut down with this exit code.
    Shutdown(u32),
    /// The guest is dead or did something lde cannot go on from.
    Crash(Crash),
}

/// Ways a guest run can end badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// KVM_EXIT_SHUTDOWN: on x86 a triple fault.
    TripleFault,
    /// KVM_EXIT_INTERNAL_ERROR: KVM could not emulate or deliver something.
    InternalError,
    /// KVM_EXIT_FAIL_ENTRY with the hardware's reason.
    FailEntry(u64),
    /// KVM_EXIT_HLT: the vCPU halted for good (in-kernel LAPIC halts never reach us otherwise).
    Halted,
    /// The guest wrote a value outside 0..=63 to the shutdown port.
    BadExitCode(u32),
    /// An exit lde has no handler for.
    Unexpected(&'static str),
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Crash::TripleFault => write!(f, "triple fault (KVM_EXIT_SHUTDOWN)"),
            Crash::InternalError => write!(f, "KVM internal error (KVM_EXIT_INTERNAL_ERROR)"),
            Crash::FailEntry(reason) => write!(f, "VM entry failed, hardware reason {reason:#x}"),
            Crash::Halted => write!(f, "the vCPU halted with no way to wake (KVM_EXIT_HLT)"),
            Crash::BadExitCode(v) => write!(f, "the guest wrote {v:#x} to the shutdown port, not a code in 0..=63"),
            Crash::Unexpected(what) => write!(f, "unexpected VM exit {what}"),
        }
    }
}

/// Counts of the exits lde handled, by reason, shared between the vCPU thread (which counts)
/// and whoever reports them while the guest runs.
#[derive(Debug, Default)]
pub struct VmExitCounts {
    pub io_in: AtomicU64,
    pub io_out: AtomicU64,
    pub mmio: AtomicU64,
    pub other: AtomicU64,
    /// Writes to the bench port (counted in `io_out` too).
    pub bench: AtomicU64,
    /// Writes to the milestone port, whatever their value (counted in `io_out` too; an exit
    /// hook such as `observe::milestones` reads what they mean).
    pub milestones: AtomicU64,
}

/// A copy of [`VmExitCounts`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VmExitTotals {
    pub io_in: u64,
    pub io_out: u64,
    pub mmio: u64,
    pub other: u64,
}

impl VmExitCounts {
    pub fn totals(&self) -> VmExitTotals {
        VmExitTotals {
            io_in: self.io_in.load(Relaxed),
            io_out: self.io_out.load(Relaxed),
            mmio: self.mmio.load(Relaxed),
            other: self.other.load(Relaxed),
        }
    }
}

impl VmExitTotals {
    /// All of them (saturated: a guest decides how many exits it makes).
    pub fn total(&self) -> u64 {
        [self.io_out, self.mmio, self.other].iter().fold(self.io_in, |sum, &n| sum.saturating_add(n))
    }
}

fn serial_offset(port: u16) -> Option<u8> {
    port.checked_sub(SERIAL_PORT).filter(|&o| o < SERIAL_PORT_SIZE).map(|o| o as u8)
}

/// Decides what `exit` means and performs its device access.
pub fn handle_vmexit(exit: VcpuExit, devices: &mut Devices, counts: &VmExitCounts) -> Action {
    match exit {
        VcpuExit::IoOut(port, data) => {
            counts.io_out.fetch_add(1, Relaxed);
            if let Some(offset) = serial_offset(port) {
                let mut serial = lock_serial(&devices.serial);
                for &b in data {
                    // The write reaches our Console, which cannot fail; an irqfd error would
                    // only lose an interrupt the guest has not asked for.
                    if let Err(e) = serial.write(offset, b) {
                        log::warn!("serial write failed: {e:?}");
                    }
                }
                return Action::Continue;
            }
            if port == CONSOLE_PORT {
                let mut serial = lock_serial(&devices.serial);
                devices.console.write(data, &mut serial);
                return Action::Continue;
            }
            if port == BENCH_PORT {
                counts.bench.fetch_add(1, Relaxed);
                return Action::Continue;
            }
            if port == MILESTONE_PORT {
                counts.milestones.fetch_add(1, Relaxed);
                return Action::Continue;
            }
            if ShutdownPort::claims(port) {
                return match devices.shutdown_port.write(port, data) {
                    ShutdownRequest::Shutdown(code) => Action::Shutdown(code),
                    ShutdownRequest::Invalid(v) => Action::Crash(Crash::BadExitCode(v)),
                };
            }
            log::debug!("ignored write to unclaimed port {port:#x}: {data:?}");
            Action::Continue
        }
        VcpuExit::IoIn(port, data) => {
            counts.io_in.fetch_add(1, Relaxed);
            if let Some(offset) = serial_offset(port) {
                let mut serial = lock_serial(&devices.serial);
                data.iter_mut().for_each(|b| *b = serial.read(offset));
            } else if port == BENCH_PORT {
                data.fill(0);
            } else if port == CONSOLE_PORT {
                devices.console.read(data);
            } else if port == INPUT_STATUS_PORT {
                data.fill(0);
                data[0] = if devices.input_status.ended() { INPUT_ENDED } else { INPUT_OPEN };
            } else {
                // Nothing answers: the bus floats high, as on real hardware.
                log::debug!("read from unclaimed port {port:#x}");
                data.fill(0xff);
            }
            Action::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            counts.mmio.fetch_add(1, Relaxed);
            mmio_read(addr, data, devices);
            Action::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            counts.mmio.fetch_add(1, Relaxed);
            mmio_write(addr, data, devices);
            Action::Continue
        }
        VcpuExit::Shutdown => Action::Crash(Crash::TripleFault),
        VcpuExit::InternalError => Action::Crash(Crash::InternalError),
        VcpuExit::FailEntry(reason, _) => Action::Crash(Crash::FailEntry(reason)),
        VcpuExit::Hlt => Action::Crash(Crash::Halted),
        other => {
            counts.other.fetch_add(1, Relaxed);
            Action::Crash(Crash::Unexpected(exit_name(&other)))
        }
    }
}

/// A read of MMIO: a disk's registers, or nothing (the bus floats high).
fn mmio_read(addr: u64, data: &mut [u8], devices: &Devices) {
    match disk_at(addr, devices.disks.len()) {
        Some((index, offset)) => lock(&devices.disks[index].device).read(offset, data),
        None => {
            log::debug!("read from unclaimed MMIO {addr:#x}");
            data.fill(0xff);
        }
    }
}

/// A write of MMIO: a disk's registers, or nothing.
fn mmio_write(addr: u64, data: &[u8], devices: &Devices) {
    let Some((index, offset)) = disk_at(addr, devices.disks.len()) else {
        log::debug!("ignored write to unclaimed MMIO {addr:#x}");
        return;
    };
    let disk = &devices.disks[index];
    // A queue notification that reached lde rather than KVM's ioeventfd: hand it to the event
    // loop all the same, so that the vCPU goes straight back to the guest.
    if lock(&disk.device).write(offset, data) {
        if let Err(e) = disk.notify.write(1) {
            log::warn!("disk {index}: notification lost: {e}");
        }
    }
}

fn exit_name(exit: &VcpuExit) -> &'static str {
    match exit {
        VcpuExit::Unknown => "KVM_EXIT_UNKNOWN",
        VcpuExit::Exception => "KVM_EXIT_EXCEPTION",
        VcpuExit::Hypercall(_) => "KVM_EXIT_HYPERCALL",
        VcpuExit::Debug(_) => "KVM_EXIT_DEBUG",
        VcpuExit::IrqWindowOpen => "KVM_EXIT_IRQ_WINDOW_OPEN",
        VcpuExit::Intr => "KVM_EXIT_INTR",
        VcpuExit::SystemEvent(..) => "KVM_EXIT_SYSTEM_EVENT",
        VcpuExit::Nmi => "KVM_EXIT_NMI",
        _ => "(other)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::serial::{new_serial, SharedBuffer};
    use lde_abi::ports::SHUTDOWN_PORT;
    use std::sync::{Arc, Mutex};

    fn devices() -> (Devices, SharedBuffer) {
        let out = SharedBuffer::default();
        let serial = new_serial(Box::new(out.clone())).unwrap();
        let mem = vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10_0000)]).unwrap();
        let devices = Devices {
            serial: Arc::new(Mutex::new(serial)),
            shutdown_port: ShutdownPort,
            input_status: Default::default(),
            console: crate::devices::ConsolePort::new(mem),
            disks: Vec::new(),
        };
        (devices, out)
    }

    #[test]
    fn serial_output_reaches_the_console() {
        let (mut dev, out) = devices();
        let counts = VmExitCounts::default();
        for b in b"hi\n" {
            let action = handle_vmexit(VcpuExit::IoOut(SERIAL_PORT, &[*b]), &mut dev, &counts);
            assert_eq!(action, Action::Continue);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        // LSR (offset 5) says the transmitter is empty.
        let mut lsr = [0u8];
        handle_vmexit(VcpuExit::IoIn(SERIAL_PORT + 5, &mut lsr), &mut dev, &counts);
        assert_eq!(lsr[0] & 0x20, 0x20);
        assert_eq!(counts.totals(), VmExitTotals { io_in: 1, io_out: 3, mmio: 0, other: 0 });
    }

    #[test]
    fn a_poisoned_serial_lock_does_not_spread_the_panic() {
        let (mut dev, out) = devices();
        let serial = dev.serial.clone();
        let _ = std::thread::spawn(move || {
            let _held = serial.lock().unwrap();
            panic!("a thread dies holding the UART");
        })
        .join();
        assert!(dev.serial.is_poisoned());
        let counts = VmExitCounts::default();
        assert_eq!(handle_vmexit(VcpuExit::IoOut(SERIAL_PORT, b"k"), &mut dev, &counts), Action::Continue);
        let mut lsr = [0u8];
        assert_eq!(handle_vmexit(VcpuExit::IoIn(SERIAL_PORT + 5, &mut lsr), &mut dev, &counts), Action::Continue);
        assert_eq!(&*out.0.lock().unwrap(), b"k");
    }

    #[test]
    fn shutdown_port_ends_the_run() {
        let (mut dev, _) = devices();
        let counts = VmExitCounts::default();
        let code = 3u32.to_le_bytes();
        assert_eq!(handle_vmexit(VcpuExit::IoOut(SHUTDOWN_PORT, &code), &mut dev, &counts), Action::Shutdown(3));
        let bad = 0x1234u32.to_le_bytes();
        assert_eq!(
            handle_vmexit(VcpuExit::IoOut(SHUTDOWN_PORT, &bad), &mut dev, &counts),
            Action::Crash(Crash::BadExitCode(0x1234))
        );
    }

    #[test]
    fn unclaimed_ports_and_mmio_float_high() {
        let (mut dev, _) = devices();
        let counts = VmExitCounts::default();
        let mut data = [0u8; 2];
        assert_eq!(handle_vmexit(VcpuExit::IoIn(0x60, &mut data), &mut dev, &counts), Action::Continue);
        assert_eq!(data, [0xff, 0xff]);
        let mut word = [0u8; 4];
        assert_eq!(handle_vmexit(VcpuExit::MmioRead(0xd000_0000, &mut word), &mut dev, &counts), Action::Continue);
        assert_eq!(word, [0xff; 4]);
        assert_eq!(handle_vmexit(VcpuExit::IoOut(0x80, &[1]), &mut dev, &counts), Action::Continue);
    }

    #[test]
    fn milestone_writes_are_counted_whatever_their_value() {
        let (mut dev, _) = devices();
        let counts = VmExitCounts::default();
        for data in [&[1u8][..], &[2], &[0xff], &[7, 7, 7, 7], &[]] {
            assert_eq!(handle_vmexit(VcpuExit::IoOut(MILESTONE_PORT, data), &mut dev, &counts), Action::Continue);
        }
        assert_eq!(counts.milestones.load(Relaxed), 5);
        assert_eq!(counts.totals().io_out, 5);
    }

    #[test]
    fn input_status_reads_open_then_ended() {
        let (mut dev, _) = devices();
        let counts = VmExitCounts::default();
        let mut b = [0xaau8];
        handle_vmexit(VcpuExit::IoIn(INPUT_STATUS_PORT, &mut b), &mut dev, &counts);
        assert_eq!(b[0], INPUT_OPEN);
        // Once the serial input has handed over its last byte and seen the end.
        dev.input_status.set_ended();
        let mut b = [0xaau8];
        assert_eq!(handle_vmexit(VcpuExit::IoIn(INPUT_STATUS_PORT, &mut b), &mut dev, &counts), Action::Continue);
        assert_eq!(b[0], INPUT_ENDED);
        assert_eq!(counts.totals().io_in, 2);
    }

    #[test]
    fn fatal_exits_crash() {
        let (mut dev, _) = devices();
        let counts = VmExitCounts::default();
        assert_eq!(handle_vmexit(VcpuExit::Shutdown, &mut dev, &counts), Action::Crash(Crash::TripleFault));
        assert_eq!(handle_vmexit(VcpuExit::InternalError, &mut dev, &counts), Action::Crash(Crash::InternalError));
        assert_eq!(
            handle_vmexit(VcpuExit::FailEntry(0x21, 0), &mut dev, &counts),
            Action::Crash(Crash::FailEntry(0x21))
        );
        assert_eq!(handle_vmexit(VcpuExit::Hlt, &mut dev, &counts), Action::Crash(Crash::Halted));
        assert_eq!(
            handle_vmexit(VcpuExit::Debug(Default::default()), &mut dev, &counts),
            Action::Crash(Crash::Unexpected("KVM_EXIT_DEBUG"))
        );
    }
}
