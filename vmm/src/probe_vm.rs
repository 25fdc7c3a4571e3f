//! A small VM of lde's own for measuring what this KVM does (`gdb::measure`, `smp_probe`, the
//! bench's floor): its memory at guest address 0, and nothing else until the probe adds it.

use kvm_bindings::{kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A probe VM. Field order is drop order: the VM goes before the memory it maps.
pub struct ProbeVm {
    pub vm: VmFd,
    pub mem: GuestMemoryMmap,
}

/// A VM with `size` bytes of memory at address 0.
pub fn create(kvm: &Kvm, size: usize) -> Result<ProbeVm, kvm_ioctls::Error> {
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).map_err(|_| kvm_ioctls::Error::new(libc::ENOMEM))?;
    let vm = kvm.create_vm()?;
    let host_addr = mem.get_host_address(GuestAddress(0)).expect("address 0 is in the probe's memory");
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: size as u64,
        userspace_addr: host_addr as u64,
        flags: 0,
    };
    // SAFETY: the mapping belongs to `mem`, which the returned ProbeVm drops after `vm`.
    unsafe { vm.set_user_memory_region(region) }?;
    Ok(ProbeVm { vm, mem })
}

/// Flat 32-bit protected mode at `rip` with the stack at `rsp`, as a loader leaves a bootstrap
/// processor.
pub fn protected_mode(vcpu: &VcpuFd, rip: u64, rsp: u64) -> Result<(), kvm_ioctls::Error> {
    let mut sregs = vcpu.get_sregs()?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x08,
        type_: 0xb,
        present: 1,
        db: 1,
        s: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment { selector: 0x10, type_: 0x3, ..code };
    (sregs.cs, sregs.ds, sregs.es, sregs.ss) = (code, data, data, data);
    sregs.cr0 |= 1;
    vcpu.set_sregs(&sregs)?;
    let regs = kvm_bindings::kvm_regs { rip, rsp, rflags: 0x2, ..Default::default() };
    vcpu.set_regs(&regs)
}
