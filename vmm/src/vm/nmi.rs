//! The host side of the `lde.test=host-nmi` test hook: while the guest runs, a thread sends it
//! an NMI every millisecond (an MSI with delivery mode NMI to APIC 0, `KVM_SIGNAL_MSI`), so that
//! NMIs arrive wherever the guest is, in ring 3 above all. The kernel must count them and carry
//! on: an NMI is never a process's fault.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_bindings::kvm_msi;
use kvm_ioctls::VmFd;

/// MSI address of local APIC 0 (physical destination).
const MSI_ADDRESS_APIC0: u32 = 0xfee0_0000;
/// MSI data: delivery mode NMI (0b100 in bits 8-10); the vector is ignored.
const MSI_DATA_NMI: u32 = 0b100 << 8;
/// How often the hook sends one.
pub const NMI_EVERY: Duration = Duration::from_millis(1);

/// A running NMI sender.
pub struct NmiSender {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<u64>>,
}

impl NmiSender {
    /// Starts sending NMIs to the guest of `vm`.
    pub fn start(vm: Arc<VmFd>) -> io::Result<NmiSender> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("nmi".into()).spawn(move || {
            let msi = kvm_msi { address_lo: MSI_ADDRESS_APIC0, data: MSI_DATA_NMI, ..Default::default() };
            let mut sent = 0;
            while !flag.load(Ordering::Acquire) {
                vm.signal_msi(msi).map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
                sent += 1;
                std::thread::sleep(NMI_EVERY);
            }
            Ok(sent)
        })?;
        Ok(NmiSender { stop, thread })
    }

    /// Stops sending; returns how many NMIs were sent.
    pub fn stop(self) -> io::Result<u64> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_else(|_| Err(io::Error::other("the NMI thread panicked")))
    }
}
