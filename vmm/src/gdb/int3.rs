//! GDB's software breakpoints as `int3` (0xCC) written into guest memory, where the host's KVM
//! reports it (`KVM_GUESTDBG_USE_SW_BP`; see `measure.rs`): the byte is written through guest
//! physical memory, which lde maps directly, so a breakpoint in kernel text mapped read-only
//! works as anywhere else. The byte it replaced is kept and put back on removal, and GDB's
//! memory reads see it instead of the 0xCC.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// The `int3` instruction.
pub const INT3: u8 = 0xcc;

/// One breakpoint: where GDB asked for it, where that is in guest memory, and the byte it hides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Patch {
    addr: u64,
    phys: GuestAddress,
    saved: u8,
}

/// The software breakpoints written into guest memory.
#[derive(Debug, Default)]
pub struct Int3s(Vec<Patch>);

impl Int3s {
    /// Writes `int3` at `phys` for the breakpoint at virtual `addr` (again: nothing to do).
    pub fn insert<M: GuestMemory>(&mut self, mem: &M, addr: u64, phys: GuestAddress) -> bool {
        if self.0.iter().any(|p| p.addr == addr) {
            return true;
        }
        let Ok(saved) = mem.read_obj::<u8>(phys) else { return false };
        // Another breakpoint's address mapped to the same byte: the byte it hides is the real one.
        let saved = self.0.iter().find(|p| p.phys == phys).map_or(saved, |p| p.saved);
        if mem.write_obj(INT3, phys).is_err() {
            return false;
        }
        self.0.push(Patch { addr, phys, saved });
        true
    }

    /// Puts the byte back; false when there is no breakpoint at `addr`.
    pub fn remove<M: GuestMemory>(&mut self, mem: &M, addr: u64) -> bool {
        let Some(i) = self.0.iter().position(|p| p.addr == addr) else { return false };
        let patch = self.0.swap_remove(i);
        if !self.0.iter().any(|p| p.phys == patch.phys) {
            let _ = mem.write_obj(patch.saved, patch.phys);
        }
        true
    }

    /// Removes every breakpoint (GDB went away without removing them).
    pub fn clear<M: GuestMemory>(&mut self, mem: &M) {
        while let Some(addr) = self.0.first().map(|p| p.addr) {
            self.remove(mem, addr);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a breakpoint of lde's sits at virtual `addr`.
    pub fn at(&self, addr: u64) -> bool {
        self.0.iter().any(|p| p.addr == addr)
    }

    /// The virtual addresses of the breakpoints, for `monitor slots`.
    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|p| p.addr)
    }

    /// Shows the saved bytes instead of the 0xCCs in `data`, read from guest memory at `phys`.
    pub fn hide(&self, phys: GuestAddress, data: &mut [u8]) {
        for p in &self.0 {
            if let Some(i) = offset(phys, data.len(), p.phys) {
                data[i] = p.saved;
            }
        }
    }

    /// GDB wrote `data` at `phys`: a byte written over a breakpoint becomes the byte it hides,
    /// and the `int3` goes back on top.
    pub fn rewrite<M: GuestMemory>(&mut self, mem: &M, phys: GuestAddress, data: &[u8]) {
        for p in &mut self.0 {
            if let Some(i) = offset(phys, data.len(), p.phys) {
                p.saved = data[i];
                let _ = mem.write_obj(INT3, p.phys);
            }
        }
    }
}

/// Where `at` lies in the `len` bytes from `start`, if it does.
fn offset(start: GuestAddress, len: usize, at: GuestAddress) -> Option<usize> {
    let i = at.0.checked_sub(start.0)?;
    (i < len as u64).then_some(i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn int3_goes_in_hides_from_reads_and_comes_out() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2000)]).unwrap();
        mem.write_slice(&[0x55, 0x48, 0x89, 0xe5], GuestAddress(0x1000)).unwrap();
        let mut bps = Int3s::default();
        assert!(bps.insert(&mem, 0xffff_8000_0000_1001, GuestAddress(0x1001)));
        assert!(bps.insert(&mem, 0xffff_8000_0000_1001, GuestAddress(0x1001)), "again: no new patch");
        let mut raw = [0u8; 4];
        mem.read_slice(&mut raw, GuestAddress(0x1000)).unwrap();
        assert_eq!(raw, [0x55, INT3, 0x89, 0xe5]);
        bps.hide(GuestAddress(0x1000), &mut raw);
        assert_eq!(raw, [0x55, 0x48, 0x89, 0xe5], "GDB reads the original byte");
        assert!(bps.at(0xffff_8000_0000_1001) && !bps.at(0x1001));

        // A second address mapped to the same byte keeps the real byte, not the 0xCC.
        assert!(bps.insert(&mem, 0x1001, GuestAddress(0x1001)));
        assert!(bps.remove(&mem, 0xffff_8000_0000_1001));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1001)).unwrap(), INT3, "the other still needs it");

        // GDB writes over the breakpoint: the new byte is kept, the int3 stays on top.
        bps.rewrite(&mem, GuestAddress(0x1000), &[0x90, 0x90]);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1001)).unwrap(), INT3);
        bps.clear(&mem);
        assert!(bps.is_empty());
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1001)).unwrap(), 0x90);
        assert!(!bps.remove(&mem, 0x1001));
    }

    #[test]
    fn memory_outside_guest_ram_is_refused() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let mut bps = Int3s::default();
        assert!(!bps.insert(&mem, 0x5000, GuestAddress(0x5000)));
        assert!(bps.is_empty());
    }
}
