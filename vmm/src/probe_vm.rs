//! A small VM of lde's own for measuring what this KVM does (`gdb::measure`, `smp_probe`):
//! its memory at guest address 0, and nothing else until the probe adds it.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
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
