//! The guest-physical memory map, lowest address first.
//!
//! ```text
//! 0x0000_0000  page 0 (the kernel unmaps it once it has read the boot data)
//! 0x0000_6000  PVH start info (hvm_start_info), then the module list
//! 0x0000_7000  PVH memory map
//! 0x0002_0000  kernel command line (NUL-terminated)
//! 0x0009_fc00  end of low RAM: the MP table (mptable.rs) in the last KiB of base memory, then
//!              0xa_0000-0x10_0000 (legacy VGA/BIOS hole); all reserved in the memory map
//! 0x0010_0000  kernel image (its ELF's physical addresses), then free RAM
//!   ... top    initrd (the user programs), page-aligned just below the end of RAM
//! 0xc000_0000  end of RAM at most; MMIO hole up to 4 GiB (LAPIC at 0xfee0_0000)
//! ```

use lde_abi::boot::{MEMMAP_RAM, MEMMAP_RESERVED};
use vm_memory::GuestAddress;

/// Where the PVH start info goes; its address is passed in `ebx`.
pub const PVH_START_INFO_ADDR: GuestAddress = GuestAddress(0x6000);
/// Where the PVH module list goes, right after the 56-byte start info.
pub const PVH_MODLIST_ADDR: GuestAddress = GuestAddress(0x6040);
/// Where the PVH memory map goes.
pub const PVH_MEMMAP_ADDR: GuestAddress = GuestAddress(0x7000);
/// End (exclusive) of the room for the memory map.
pub const PVH_MEMMAP_END: GuestAddress = GuestAddress(0x8000);
/// Where the kernel command line goes.
pub const CMDLINE_ADDR: GuestAddress = GuestAddress(0x2_0000);
/// Largest command line, including its NUL; the kernel reads no more.
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// End (exclusive) of low RAM: the extended BIOS data area would start here.
pub const LOW_RAM_END: GuestAddress = GuestAddress(0x9_fc00);
/// Start of RAM above the legacy hole; the kernel is linked to load here.
pub const HIGH_RAM_START: GuestAddress = GuestAddress(0x10_0000);
/// Start of the 32-bit MMIO hole; RAM must end at or below it.
pub const MMIO_HOLE_START: GuestAddress = GuestAddress(0xc000_0000);
/// Address KVM needs for its three-page TSS on Intel hosts (unused by the guest).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// The LAPIC's MMIO page (emulated by KVM's in-kernel irqchip).
pub const LAPIC_ADDR: GuestAddress = GuestAddress(0xfee0_0000);
/// Page size used for alignment.
pub const PAGE_SIZE: u64 = 0x1000;

/// Smallest guest memory `lde run --mem` accepts, in MiB.
pub const MEM_MIN_MIB: u64 = 16;
/// Largest guest memory, in MiB: all of RAM lies below the MMIO hole.
pub const MEM_MAX_MIB: u64 = MMIO_HOLE_START.0 >> 20;
/// Default guest memory, in MiB.
pub const MEM_DEFAULT_MIB: u64 = 128;

// The regions above are ordered and disjoint; checked when lde is compiled.
const _: () = {
    assert!(PVH_START_INFO_ADDR.0 + 56 <= PVH_MODLIST_ADDR.0);
    assert!(PVH_MODLIST_ADDR.0 + 4 * 32 <= PVH_MEMMAP_ADDR.0);
    assert!(PVH_MEMMAP_ADDR.0 + 3 * 24 <= PVH_MEMMAP_END.0);
    assert!(PVH_MEMMAP_END.0 <= CMDLINE_ADDR.0);
    assert!(CMDLINE_ADDR.0 + CMDLINE_MAX_SIZE as u64 <= LOW_RAM_END.0);
    assert!(LOW_RAM_END.0 < HIGH_RAM_START.0);
    assert!(HIGH_RAM_START.0 < MEM_MIN_MIB << 20);
    assert!(MEM_MAX_MIB << 20 <= MMIO_HOLE_START.0);
    assert!(MMIO_HOLE_START.0 < LAPIC_ADDR.0);
};

/// One memory-map range: `(start, size, kind)` with `kind` from `lde_abi::boot`.
pub type MemRange = (GuestAddress, u64, u32);

/// The memory map the guest is told about, for `mem_size` bytes of RAM starting at 0.
pub fn memory_map(mem_size: u64) -> Vec<MemRange> {
    vec![
        (GuestAddress(0), LOW_RAM_END.0, MEMMAP_RAM),
        (LOW_RAM_END, HIGH_RAM_START.0 - LOW_RAM_END.0, MEMMAP_RESERVED),
        (HIGH_RAM_START, mem_size - HIGH_RAM_START.0, MEMMAP_RAM),
    ]
}

/// Where an initrd of `size` bytes goes: page-aligned, as high as it fits in `mem_size` bytes
/// of RAM, and not below `lowest` (the end of the kernel). `None` if it does not fit.
pub fn initrd_addr(mem_size: u64, size: u64, lowest: u64) -> Option<GuestAddress> {
    let start = mem_size.checked_sub(size)? & !(PAGE_SIZE - 1);
    (start >= lowest).then_some(GuestAddress(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_covers_ram_and_the_legacy_hole() {
        let map = memory_map(128 << 20);
        assert_eq!(map.len(), 3);
        assert_eq!(map[0], (GuestAddress(0), 0x9_fc00, MEMMAP_RAM));
        assert_eq!(map[1], (GuestAddress(0x9_fc00), 0x6_0400, MEMMAP_RESERVED));
        assert_eq!(map[2], (GuestAddress(0x10_0000), (128 << 20) - 0x10_0000, MEMMAP_RAM));
        let end = map.last().map(|(a, s, _)| a.0 + s).unwrap();
        assert_eq!(end, 128 << 20);
    }

    #[test]
    fn initrd_goes_page_aligned_at_the_top() {
        let mem = 64 << 20;
        assert_eq!(initrd_addr(mem, 0x1800, 0x20_0000), Some(GuestAddress(mem - 0x2000)));
        assert_eq!(initrd_addr(mem, 0x2000, 0x20_0000), Some(GuestAddress(mem - 0x2000)));
        // Too big to fit above the kernel, or bigger than memory.
        assert_eq!(initrd_addr(mem, mem - 0x10_0000, 0x20_0000), None);
        assert_eq!(initrd_addr(mem, mem + 1, 0), None);
    }
}
