//! Guest-virtual to guest-physical translation through the guest's own page tables (4-level
//! long-mode paging: 4 KiB, 2 MiB and 1 GiB pages), as GDB's memory reads and writes need it.
//!
//! The walk is done here rather than with `KVM_TRANSLATE`, so that it reads exactly the tables
//! the guest set up (the kernel's half and the running process's user half of CR3's space) and
//! can be unit-tested on memory built by hand.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// CR0.PG: paging on.
const CR0_PG: u64 = 1 << 31;
/// EFER.LMA: long mode active.
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry bits.
const PTE_PRESENT: u64 = 1;
const PTE_LARGE: u64 = 1 << 7;
/// Physical-address bits 12–51 of an entry (and of CR3).
const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The registers that decide how an address translates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub efer: u64,
}

/// Why an address does not translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No present mapping at this level (4 = PML4 … 1 = page table).
    NotPresent(u8),
    /// A table lies outside guest memory.
    TableOutsideMemory,
    /// Paging is on but not in long mode (lde's kernel never runs so).
    Legacy,
}

impl Paging {
    /// The guest-physical address of `vaddr` and how many bytes from it stay on the same page.
    pub fn translate<M: GuestMemory>(&self, mem: &M, vaddr: u64) -> Result<(GuestAddress, u64), Fault> {
        if self.cr0 & CR0_PG == 0 {
            return Ok((GuestAddress(vaddr), 4096 - (vaddr & 0xfff)));
        }
        if self.efer & EFER_LMA == 0 {
            return Err(Fault::Legacy);
        }
        let mut table = self.cr3 & PTE_ADDR_MASK;
        for level in (1..=4u8).rev() {
            let shift = 12 + 9 * u32::from(level - 1);
            let index = (vaddr >> shift) & 0x1ff;
            let entry: u64 = mem.read_obj(GuestAddress(table + index * 8)).map_err(|_| Fault::TableOutsideMemory)?;
            if entry & PTE_PRESENT == 0 {
                return Err(Fault::NotPresent(level));
            }
            if level == 1 || (level <= 3 && entry & PTE_LARGE != 0) {
                let size = 1u64 << shift;
                let base = entry & PTE_ADDR_MASK & !(size - 1);
                let offset = vaddr & (size - 1);
                return Ok((GuestAddress(base + offset), size - offset));
            }
            table = entry & PTE_ADDR_MASK;
        }
        unreachable!("level 1 always returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn long_mode(cr3: u64) -> Paging {
        Paging { cr0: CR0_PG | 1, cr3, efer: EFER_LMA | (1 << 8) }
    }

    #[test]
    fn walks_4k_2m_and_1g_pages() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let w = |addr: u64, value: u64| mem.write_obj(value, GuestAddress(addr)).unwrap();
        // PML4 at 0x1000: slot 0 -> PDPT 0x2000; slot 1 -> PDPT 0x6000.
        w(0x1000, 0x2003);
        w(0x1008, 0x6003);
        // PDPT 0x2000: slot 0 -> PD 0x3000. PDPT 0x6000: slot 0 is a 1 GiB page at 0.
        w(0x2000, 0x3003);
        w(0x6000, 0x83);
        // PD 0x3000: slot 0 -> PT 0x4000; slot 1: a 2 MiB page at 0x20_0000.
        w(0x3000, 0x4003);
        w(0x3008, 0x20_0083);
        // PT 0x4000: slot 5 -> frame 0x9000 (user, writable).
        w(0x4000 + 5 * 8, 0x9007);
        let p = long_mode(0x1000);
        assert_eq!(p.translate(&mem, 0x5123), Ok((GuestAddress(0x9123), 0xedd)));
        assert_eq!(p.translate(&mem, 0x20_1234), Ok((GuestAddress(0x20_1234), 0x20_0000 - 0x1234)));
        assert_eq!(p.translate(&mem, 0x80_0000_0010), Ok((GuestAddress(0x10), (1 << 30) - 0x10)));
        assert_eq!(p.translate(&mem, 0x6000), Err(Fault::NotPresent(1)));
        assert_eq!(p.translate(&mem, 0x40_0000), Err(Fault::NotPresent(2)));
        assert_eq!(p.translate(&mem, 0x100_0000_0000), Err(Fault::NotPresent(4)));
    }

    #[test]
    fn no_paging_is_identity_and_legacy_paging_is_refused() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let off = Paging { cr0: 1, ..Default::default() };
        assert_eq!(off.translate(&mem, 0x10_0010), Ok((GuestAddress(0x10_0010), 0xff0)));
        let legacy = Paging { cr0: CR0_PG | 1, cr3: 0, efer: 0 };
        assert_eq!(legacy.translate(&mem, 0), Err(Fault::Legacy));
        let outside = long_mode(0x10_0000);
        assert_eq!(outside.translate(&mem, 0), Err(Fault::TableOutsideMemory));
    }
}
