//! Keeping GDB's pauses out of the guest's time: while GDB holds the machine the TSC goes on
//! counting, and the kernel charges processes by TSC differences (`user_cycles`, the runaway
//! watchdog, `uptime_ms`). On each resume lde moves every vCPU's TSC offset back by the
//! cycles it was stopped (`KVM_SET_DEVICE_ATTR`, group `KVM_VCPU_TSC_CTRL`, `KVM_VCPU_TSC_OFFSET`), so
//! the guest's TSC reads as if no time had passed while it was stopped.
//!
//! Where the host does not offer that attribute the pauses stay in the guest's time, and lde
//! says so once when GDB attaches (`monitor clock` says it too).

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_device_attr, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

// The vCPU's device-attribute requests (kvm-ioctls 0.25 offers them on x86 only for the VM).
ioctl_iow_nr!(KVM_SET_DEVICE_ATTR, kvm_bindings::KVMIO, 0xe1, kvm_device_attr);
ioctl_iow_nr!(KVM_GET_DEVICE_ATTR, kvm_bindings::KVMIO, 0xe2, kvm_device_attr);
ioctl_iow_nr!(KVM_HAS_DEVICE_ATTR, kvm_bindings::KVMIO, 0xe3, kvm_device_attr);

/// Makes one device-attribute request on the vCPU.
fn device_attr(vcpu: &VcpuFd, request: libc::c_ulong, offset: &mut u64) -> std::io::Result<()> {
    let attr = attr(offset);
    // SAFETY: the three requests read a kvm_device_attr and read or write the u64 its `addr`
    // points at: `offset`, borrowed mutably for the call.
    let ret = unsafe { ioctl_with_ref(&vcpu.as_raw_fd(), request, &attr) };
    match ret {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

pub struct StopClock {
    /// The host TSC when the vCPU stopped for GDB; `None` while it runs.
    stopped_at: Option<u64>,
    /// The host offers `KVM_VCPU_TSC_OFFSET`.
    offset_attr: bool,
    /// Cycles taken out of the guest's time so far.
    pub hidden: u64,
    /// Set when moving the offset failed (then it is not tried again).
    failed: Option<String>,
}

fn attr(offset: &mut u64) -> kvm_device_attr {
    kvm_device_attr {
        group: KVM_VCPU_TSC_CTRL,
        attr: u64::from(KVM_VCPU_TSC_OFFSET),
        addr: offset as *mut u64 as u64,
        flags: 0,
    }
}

/// Moves `vcpu`'s TSC offset back by `cycles`.
fn shift(vcpu: &VcpuFd, cycles: u64) -> std::io::Result<()> {
    let mut offset = 0u64;
    device_attr(vcpu, KVM_GET_DEVICE_ATTR(), &mut offset)?;
    let mut moved = offset.wrapping_sub(cycles);
    device_attr(vcpu, KVM_SET_DEVICE_ATTR(), &mut moved)
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl StopClock {
    /// Starts stopped: lde waits for GDB before the first instruction.
    pub fn new(vcpu: &VcpuFd) -> Self {
        let mut probe = 0u64;
        let offset_attr = device_attr(vcpu, KVM_HAS_DEVICE_ATTR(), &mut probe).is_ok();
        StopClock { stopped_at: Some(rdtsc()), offset_attr, hidden: 0, failed: None }
    }

    /// Whether stops are hidden from the guest on this host.
    pub fn hides_stops(&self) -> bool {
        self.offset_attr && self.failed.is_none()
    }

    /// The machine stopped for GDB (idempotent).
    pub fn stop(&mut self) {
        self.stopped_at.get_or_insert_with(rdtsc);
    }

    /// The machine is about to run again: hide the time it was stopped from every vCPU, each
    /// moved back by the same cycles so that their TSCs stay in step.
    pub fn resume(&mut self, vcpus: &[&VcpuFd]) {
        let Some(at) = self.stopped_at.take() else { return };
        if !self.hides_stops() {
            return;
        }
        let stopped = rdtsc().saturating_sub(at);
        for vcpu in vcpus {
            if let Err(e) = shift(vcpu, stopped) {
                log::warn!(
                    "gdb: cannot move the guest's TSC offset ({e}); time stopped in GDB now counts as guest time"
                );
                self.failed = Some(e.to_string());
                return;
            }
        }
        self.hidden += stopped;
    }

    /// One line for `monitor clock` and the attach message.
    pub fn describe(&self) -> String {
        match (&self.failed, self.offset_attr) {
            (None, true) => format!(
                "time stopped in GDB is hidden from the guest: lde moves the vCPUs' TSC offsets back on each resume ({} cycles so far)",
                self.hidden
            ),
            (Some(e), _) => format!("time stopped in GDB counts as guest time: moving the TSC offset failed ({e})"),
            (None, false) => "time stopped in GDB counts as guest time: this KVM cannot move the vCPU's TSC offset (no KVM_VCPU_TSC_OFFSET)".to_string(),
        }
    }
}
