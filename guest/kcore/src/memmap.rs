//! Arithmetic on the PVH memory map.

use lde_abi::boot::{MemmapEntry, MEMMAP_RAM};

/// Total bytes of usable RAM in a memory map (saturating: a hostile map cannot overflow it).
pub fn ram_bytes(entries: &[MemmapEntry]) -> u64 {
    entries.iter().filter(|e| e.kind == MEMMAP_RAM).fold(0u64, |sum, e| sum.saturating_add(e.size))
}

/// The end (exclusive) of the highest usable RAM range.
pub fn ram_end(entries: &[MemmapEntry]) -> u64 {
    entries.iter().filter(|e| e.kind == MEMMAP_RAM).map(|e| e.addr.saturating_add(e.size)).max().unwrap_or(0)
}

/// Where the kernel's identity map of RAM ends: RAM above it (if any) is not mapped, and the
/// MMIO hole starts there.
pub const IDENTITY_MAPPED_END: u64 = 0xc000_0000;
const PAGE: u64 = 4096;

/// Why a module (the initrd) cannot be read where the loader put it.
#[derive(Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// Its end overflows, or lies above the identity map ([`IDENTITY_MAPPED_END`]).
    NotMapped,
    /// It is not inside one RAM range of the memory map.
    NotRam,
    /// It overlaps page 0 (unmapped once boot is done).
    PageZero,
    /// It overlaps the kernel image.
    KernelImage,
}

/// The range `[start, end)` of a module of `size` bytes at `paddr`, if the kernel may read it
/// in place for the rest of the run: identity-mapped, inside one RAM range of `memmap`, and
/// clear of page 0 and of the kernel image `kernel` (`[start, end)`). An empty module is the
/// empty range at 0.
pub fn module_range(
    memmap: &[MemmapEntry],
    paddr: u64,
    size: u64,
    kernel: (u64, u64),
) -> Result<(u64, u64), ModuleError> {
    if size == 0 {
        return Ok((0, 0));
    }
    let end = paddr.checked_add(size).filter(|&end| end <= IDENTITY_MAPPED_END).ok_or(ModuleError::NotMapped)?;
    if paddr < PAGE {
        return Err(ModuleError::PageZero);
    }
    if paddr < kernel.1 && kernel.0 < end {
        return Err(ModuleError::KernelImage);
    }
    let in_ram = memmap.iter().any(|e| e.kind == MEMMAP_RAM && e.addr <= paddr && end <= e.addr.saturating_add(e.size));
    if !in_ram {
        return Err(ModuleError::NotRam);
    }
    Ok((paddr, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lde_abi::boot::MEMMAP_RESERVED;

    fn entry(addr: u64, size: u64, kind: u32) -> MemmapEntry {
        MemmapEntry { addr, size, kind, reserved: 0 }
    }

    #[test]
    fn counts_only_ram() {
        let map = [
            entry(0, 0x9_f000, MEMMAP_RAM),
            entry(0xa_0000, 0x6_0000, MEMMAP_RESERVED),
            entry(0x10_0000, 0x7f0_0000, MEMMAP_RAM),
        ];
        assert_eq!(ram_bytes(&map), 0x9_f000 + 0x7f0_0000);
        assert_eq!(ram_end(&map), 0x800_0000);
        assert_eq!(ram_bytes(&[]), 0);
    }

    #[test]
    fn hostile_sizes_saturate() {
        let map = [entry(u64::MAX, u64::MAX, MEMMAP_RAM), entry(0, u64::MAX, MEMMAP_RAM)];
        assert_eq!(ram_bytes(&map), u64::MAX);
        assert_eq!(ram_end(&map), u64::MAX);
    }

    /// The map lde gives a 64 MiB guest, the kernel at 1 MiB.
    const KERNEL: (u64, u64) = (0x10_0000, 0x18_0000);
    fn guest_map() -> [MemmapEntry; 2] {
        [entry(0, 0x9_fc00, MEMMAP_RAM), entry(0x10_0000, 0x3f0_0000, MEMMAP_RAM)]
    }

    #[test]
    fn a_module_in_ram_above_the_kernel_is_accepted() {
        assert_eq!(module_range(&guest_map(), 0x200_0000, 0x1234, KERNEL), Ok((0x200_0000, 0x200_1234)));
        assert_eq!(module_range(&guest_map(), KERNEL.1, 4096, KERNEL), Ok((KERNEL.1, KERNEL.1 + 4096)));
        assert_eq!(module_range(&guest_map(), 0x8000, 4096, KERNEL), Ok((0x8000, 0x9000)));
        assert_eq!(module_range(&guest_map(), 0, 0, KERNEL), Ok((0, 0)));
    }

    #[test]
    fn a_module_on_page_zero_is_refused() {
        assert_eq!(module_range(&guest_map(), 0, 4096, KERNEL), Err(ModuleError::PageZero));
        assert_eq!(module_range(&guest_map(), 0xff8, 16, KERNEL), Err(ModuleError::PageZero));
        // The old check (paddr != 0, end <= 0xc000_0000) let this one through.
        assert_eq!(module_range(&guest_map(), 8, 4096, KERNEL), Err(ModuleError::PageZero));
    }

    #[test]
    fn a_module_over_the_kernel_image_is_refused() {
        for (paddr, size) in [(KERNEL.0, 4096), (KERNEL.0 - 4096, 8192), (KERNEL.1 - 1, 4096), (0xf_0000, 0x20_0000)] {
            assert_eq!(module_range(&guest_map(), paddr, size, KERNEL), Err(ModuleError::KernelImage), "{paddr:#x}");
        }
    }

    #[test]
    fn a_module_outside_ram_or_the_identity_map_is_refused() {
        let map = guest_map();
        assert_eq!(module_range(&map, 0x9_f000, 4096, KERNEL), Err(ModuleError::NotRam)); // over the hole
        assert_eq!(module_range(&map, 0x3ff_f000, 8192, KERNEL), Err(ModuleError::NotRam)); // past RAM
        assert_eq!(module_range(&map, 0xbfff_f000, 8192, KERNEL), Err(ModuleError::NotMapped));
        assert_eq!(module_range(&map, u64::MAX - 8, 16, KERNEL), Err(ModuleError::NotMapped));
    }
}
