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
}
