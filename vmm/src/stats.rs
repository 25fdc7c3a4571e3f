//! Reading the kernel's stats page (`lde_abi::stats`) from guest memory, without a VM exit.
//!
//! The page's address comes from the kernel ELF's symbol table (symbol `LDE_STATS`). A
//! snapshot copies the page between two reads of its sequence counter and retries until both
//! are the same even value, so it never mixes two updates.

use std::sync::atomic::{fence, Ordering};

use lde_abi::stats::{StatsPage, STATS_MAGIC, STATS_SYMBOL, STATS_VERSION};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Why the stats page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kernel has no {STATS_SYMBOL} symbol: it exports no stats page")]
    NoSymbol,
    #[error("the stats page at {0:#x} is not in guest memory")]
    OutOfMemory(u64),
    #[error("the stats page has magic {0:#x}, not lde's")]
    BadMagic(u64),
    #[error("the kernel's stats page has version {0}, this lde reads version {STATS_VERSION}: use the lde that built the kernel")]
    BadVersion(u32),
    #[error("the stats page says it is {0} bytes, this lde expects {1}")]
    BadSize(u32, usize),
    #[error("the kernel kept updating the stats page; no consistent snapshot")]
    Busy,
}

/// Finds the address of symbol `name` in a 64-bit little-endian ELF's symbol table.
pub fn find_symbol(elf: &[u8], name: &str) -> Option<u64> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..4)? != b"\x7fELF" || elf.get(4)? != &2 {
        return None;
    }
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let section = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    for i in 0..shnum {
        let sh = section(i)?;
        if u32_at(sh + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (offset, size, link, entsize) = (
            u64_at(sh + 0x18)? as usize,
            u64_at(sh + 0x20)? as usize,
            u32_at(sh + 0x28)? as usize,
            u64_at(sh + 0x38)? as usize,
        );
        let strtab = section(link)?;
        let str_off = u64_at(strtab + 0x18)? as usize;
        if entsize == 0 {
            return None;
        }
        for s in 0..size / entsize {
            let sym = offset.checked_add(s * entsize)?;
            let name_off = str_off.checked_add(u32_at(sym)? as usize)?;
            let rest = elf.get(name_off..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            if &rest[..end] == name.as_bytes() {
                return u64_at(sym + 8);
            }
        }
    }
    None
}

/// Reads snapshots of the stats page.
#[derive(Clone)]
pub struct StatsReader {
    mem: GuestMemoryMmap,
    addr: GuestAddress,
}

impl StatsReader {
    /// A reader for the page the kernel ELF `kernel` exports, in `mem`.
    pub fn new(mem: GuestMemoryMmap, kernel: &[u8]) -> Result<StatsReader, Error> {
        let addr = find_symbol(kernel, STATS_SYMBOL).ok_or(Error::NoSymbol)?;
        let size = std::mem::size_of::<StatsPage>();
        if mem.checked_offset(GuestAddress(addr), size).is_none() {
            return Err(Error::OutOfMemory(addr));
        }
        Ok(StatsReader { mem, addr: GuestAddress(addr) })
    }

    fn seq(&self) -> Result<u64, Error> {
        let seq_offset = std::mem::offset_of!(StatsPage, seq) as u64;
        self.mem.read_obj(GuestAddress(self.addr.0 + seq_offset)).map_err(|_| Error::OutOfMemory(self.addr.0))
    }

    /// A consistent copy of the page.
    pub fn snapshot(&self) -> Result<Box<StatsPage>, Error> {
        let mut page = Box::new(StatsPage::new());
        for _ in 0..1000 {
            let before = self.seq()?;
            if before % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            fence(Ordering::Acquire);
            // SAFETY: StatsPage is repr(C) and made of integers only, so any bytes are a valid
            // value; the slice covers exactly the boxed page.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    (&mut *page as *mut StatsPage).cast::<u8>(),
                    std::mem::size_of::<StatsPage>(),
                )
            };
            self.mem.read_slice(bytes, self.addr).map_err(|_| Error::OutOfMemory(self.addr.0))?;
            fence(Ordering::Acquire);
            if self.seq()? == before {
                return check(page);
            }
        }
        Err(Error::Busy)
    }
}

fn check(page: Box<StatsPage>) -> Result<Box<StatsPage>, Error> {
    if page.magic != STATS_MAGIC {
        return Err(Error::BadMagic(page.magic));
    }
    if page.version != STATS_VERSION {
        return Err(Error::BadVersion(page.version));
    }
    if page.size as usize != std::mem::size_of::<StatsPage>() {
        return Err(Error::BadSize(page.size, std::mem::size_of::<StatsPage>()));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_exports_its_stats_page() {
        let addr = find_symbol(crate::guest::KERNEL, STATS_SYMBOL).expect("LDE_STATS in the kernel");
        assert_eq!(addr % 4096, 0, "page-aligned");
        assert!(addr >= 0x10_0000);
        assert_eq!(find_symbol(crate::guest::KERNEL, "no_such_symbol_here"), None);
        assert_eq!(find_symbol(b"not an elf", STATS_SYMBOL), None);
        for cut in [0, 10, 64, 200, 4096] {
            let _ = find_symbol(&crate::guest::KERNEL[..cut], STATS_SYMBOL);
        }
    }

    #[test]
    fn snapshots_check_magic_and_version() {
        let kernel = crate::guest::KERNEL;
        let addr = find_symbol(kernel, STATS_SYMBOL).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let reader = StatsReader::new(mem.clone(), kernel).unwrap();
        assert!(matches!(reader.snapshot(), Err(Error::BadMagic(0))));
        let page = Box::new(StatsPage::new());
        // SAFETY: viewing a plain-integer struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&*page as *const StatsPage).cast::<u8>(), std::mem::size_of::<StatsPage>())
        };
        mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        assert_eq!(reader.snapshot().unwrap().version, STATS_VERSION);
        mem.write_obj(STATS_VERSION + 1, GuestAddress(addr + 8)).unwrap();
        assert!(matches!(reader.snapshot(), Err(Error::BadVersion(_))));
        mem.write_obj(3u64, GuestAddress(addr + 16)).unwrap(); // seq odd: an update under way
        assert!(matches!(reader.snapshot(), Err(Error::Busy)));
    }
}
