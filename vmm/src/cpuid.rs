//! The CPUID table the guest is given: KVM's supported CPUID, completed with what KVM offers but
//! does not list there, as every VMM does (QEMU's `kvm_arch_get_supported_cpuid`, Firecracker's
//! CPUID normalisation).
//!
//! - **TSC-deadline timer** (leaf 1, ECX bit 24): the in-kernel LAPIC emulates it wherever
//!   `KVM_CAP_TSC_DEADLINE_TIMER` is present, but `KVM_GET_SUPPORTED_CPUID` never sets the bit.
//!   Without it `--timer-mode deadline` fell back to periodic on architectural KVM (seen on the
//!   nested SVM host; on PVM the guest's CPUID is the host's whatever this table says).
//! - **Hypervisor signature** (leaf 1, ECX bit 31 and leaves 0x4000_0000–0x4000_0001): the guest
//!   is told it runs on KVM, with no paravirtual features offered (leaf 0x4000_0001 is all zero).

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// CPUID.1:ECX bit of the TSC-deadline timer mode.
const TSC_DEADLINE_BIT: u32 = 1 << 24;
/// CPUID.1:ECX bit that says a hypervisor is present.
const HYPERVISOR_BIT: u32 = 1 << 31;
/// The first of KVM's hypervisor leaves: its EAX is the highest one.
const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// KVM's feature leaf (paravirtual features; none offered).
const KVM_FEATURES_LEAF: u32 = 0x4000_0001;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// Completes KVM's supported CPUID in place. `tsc_deadline`: whether KVM reported
/// `KVM_CAP_TSC_DEADLINE_TIMER`. Fails only if the table has no room for the two hypervisor
/// leaves.
pub fn complete(cpuid: &mut CpuId, tsc_deadline: bool) -> Result<(), vmm_sys_util::fam::Error> {
    for entry in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == 1) {
        entry.ecx |= HYPERVISOR_BIT;
        if tsc_deadline {
            entry.ecx |= TSC_DEADLINE_BIT;
        }
    }
    let signature = cpuid.as_slice().iter().any(|e| e.function == KVM_SIGNATURE_LEAF);
    if !signature {
        let [ebx, ecx, edx] = KVM_SIGNATURE;
        cpuid.push(kvm_cpuid_entry2 {
            function: KVM_SIGNATURE_LEAF,
            eax: KVM_FEATURES_LEAF,
            ebx,
            ecx,
            edx,
            ..Default::default()
        })?;
        cpuid.push(kvm_cpuid_entry2 { function: KVM_FEATURES_LEAF, ..Default::default() })?;
    }
    Ok(())
}

/// Gives the table vCPU `id`'s APIC id (leaf 1 EBX[31:24], and the x2APIC id of leaf 0xB's
/// every level), as each vCPU's own CPUID must say which processor it is.
pub fn set_apic_id(cpuid: &mut CpuId, id: u8) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            1 => entry.ebx = (entry.ebx & 0x00ff_ffff) | (u32::from(id) << 24),
            0xb | 0x1f => entry.edx = u32::from(id),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CpuId {
        let leaf1 = kvm_cpuid_entry2 { function: 1, ecx: 0x0000_0001, ..Default::default() };
        CpuId::from_entries(&[kvm_cpuid_entry2 { function: 0, eax: 0xd, ..Default::default() }, leaf1]).unwrap()
    }

    fn leaf(cpuid: &CpuId, function: u32) -> kvm_cpuid_entry2 {
        *cpuid.as_slice().iter().find(|e| e.function == function).unwrap()
    }

    #[test]
    fn the_deadline_bit_follows_the_capability() {
        let mut with = table();
        complete(&mut with, true).unwrap();
        assert_eq!(leaf(&with, 1).ecx, 0x0000_0001 | TSC_DEADLINE_BIT | HYPERVISOR_BIT);
        let mut without = table();
        complete(&mut without, false).unwrap();
        assert_eq!(leaf(&without, 1).ecx, 0x0000_0001 | HYPERVISOR_BIT);
    }

    #[test]
    fn the_guest_reads_kvms_signature() {
        let mut cpuid = table();
        complete(&mut cpuid, false).unwrap();
        let sig = leaf(&cpuid, KVM_SIGNATURE_LEAF);
        let bytes: Vec<u8> = [sig.ebx, sig.ecx, sig.edx].iter().flat_map(|r| r.to_le_bytes()).collect();
        assert_eq!(&bytes, b"KVMKVMKVM\0\0\0");
        assert_eq!(sig.eax, KVM_FEATURES_LEAF);
        assert_eq!(leaf(&cpuid, KVM_FEATURES_LEAF).eax, 0);
        // A second pass adds nothing.
        let len = cpuid.as_slice().len();
        complete(&mut cpuid, false).unwrap();
        assert_eq!(cpuid.as_slice().len(), len);
    }

    #[test]
    fn each_vcpu_says_which_processor_it_is() {
        let mut cpuid = table();
        cpuid.as_mut_slice()[1].ebx = 0x0008_0800;
        set_apic_id(&mut cpuid, 3);
        assert_eq!(leaf(&cpuid, 1).ebx, 0x0308_0800);
    }
}
