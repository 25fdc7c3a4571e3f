//! Reading the kernel's stats page (`lde_abi::stats`) from guest memory, without a VM exit.
//!
//! The page's address comes from the kernel ELF's symbol table (symbol `LDE_STATS`). How a
//! copy is kept from mixing two updates is the protocol's reader half,
//! `lde_abi::stats::protocol`; this file gives it guest memory to read.

use lde_abi::stats::protocol::{self, PageBytes, ReadError, RingRead};
use lde_abi::stats::{Event, ProcStats, StatsPage, STATS_MAGIC, STATS_SYMBOL, STATS_VERSION};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Why the stats page cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kernel has no {STATS_SYMBOL} symbol: it exports no stats page")]
    NoSymbol,
    #[error("cannot read the kernel's symbol table")]
    Elf(#[from] crate::elf::Error),
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

/// The address of symbol `name` in a kernel ELF, if it is a well-formed one that has it.
pub fn find_symbol(elf: &[u8], name: &str) -> Option<u64> {
    crate::elf::find_symbol(elf, name).ok().flatten()
}

/// Reads snapshots of the stats page.
#[derive(Clone)]
pub struct StatsReader {
    mem: GuestMemoryMmap,
    addr: GuestAddress,
}

/// The page's bytes in guest memory, for the protocol's reader half.
struct GuestPage<'a>(&'a StatsReader);

impl PageBytes for GuestPage<'_> {
    type Error = Error;

    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let StatsReader { mem, addr } = self.0;
        mem.read_slice(buf, GuestAddress(addr.0 + offset as u64)).map_err(|_| Error::OutOfMemory(addr.0))
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}

impl From<ReadError<Error>> for Error {
    fn from(e: ReadError<Error>) -> Error {
        match e {
            ReadError::Memory(e) => e,
            ReadError::Busy => Error::Busy,
        }
    }
}

impl StatsReader {
    /// A reader for the page the kernel ELF `kernel` exports, in `mem`.
    pub fn new(mem: GuestMemoryMmap, kernel: &[u8]) -> Result<StatsReader, Error> {
        let addr = crate::elf::find_symbol(kernel, STATS_SYMBOL)?.ok_or(Error::NoSymbol)?;
        let size = std::mem::size_of::<StatsPage>();
        if mem.checked_offset(GuestAddress(addr), size).is_none() {
            return Err(Error::OutOfMemory(addr));
        }
        Ok(StatsReader { mem, addr: GuestAddress(addr) })
    }

    /// The guest memory the page is read from (unit tests write hostile pages there).
    #[cfg(test)]
    pub(crate) fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// A consistent copy of the page's counters and process slots (everything before the two
    /// rings, which stay zero in the copy: read them with [`StatsReader::events_since`] and
    /// [`StatsReader::ended_since`]).
    pub fn snapshot(&self) -> Result<Box<StatsPage>, Error> {
        let mut page = Box::new(StatsPage::new());
        protocol::snapshot(&GuestPage(self), &mut page)?;
        check(page)
    }

    /// The counters once the guest has stopped for good: one copy even if the guest stopped in
    /// the middle of an update, with whether it did (the copy may then be torn).
    pub fn snapshot_stopped(&self) -> Result<(Box<StatsPage>, bool), Error> {
        let mut page = Box::new(StatsPage::new());
        let torn = protocol::snapshot_stopped(&GuestPage(self), &mut page)?;
        Ok((check(page)?, torn))
    }

    /// Scheduling events written after index `from`: the events read whole, and how far the
    /// ring was read (the index to continue from, how many were overwritten before they could
    /// be read, whether the kernel's count went backwards).
    pub fn events_since(&self, from: u64) -> Result<(Vec<Event>, RingRead), Error> {
        let mut events = Vec::new();
        let read = protocol::events_since(&GuestPage(self), from, |e| events.push(e))?;
        Ok((events, read))
    }

    /// Final accounting of processes that ended after index `from` (as
    /// [`StatsReader::events_since`]).
    pub fn ended_since(&self, from: u64) -> Result<(Vec<ProcStats>, RingRead), Error> {
        let mut ended = Vec::new();
        let read = protocol::ended_since(&GuestPage(self), from, |p| ended.push(p))?;
        Ok((ended, read))
    }
}

/// A count (or a total of cycles) that no kernel reaches honestly: 2^62 events at one a
/// nanosecond take 146 years, and as many TSC cycles 56 years at 2.6 GHz.
pub const IMPLAUSIBLE: u64 = 1 << 62;

/// The names of the counters in `page` at or beyond [`IMPLAUSIBLE`]: the page is the kernel's to
/// write, and a figure there may be anything. (The TSC stamps are left out: a TSC need not
/// start at 0.)
pub fn implausible(page: &StatsPage) -> Vec<&'static str> {
    let named = [
        ("ticks", page.ticks),
        ("syscall_arch", page.syscall_arch),
        ("syscall_recovered", page.syscall_recovered),
        ("int80_arch", page.int80_arch),
        ("int80_recovered", page.int80_recovered),
        ("switches", page.switches),
        ("kills", page.kills),
        ("spawned", page.spawned),
        ("idle_cycles", page.idle_cycles),
        ("tick_cycles", page.tick_cycles),
        ("tick_count", page.tick_count),
        ("switch_cycles", page.switch_cycles),
        ("switch_count", page.switch_count),
        ("frames_in_use", page.frames_in_use),
        ("events_written", page.events_written),
        ("ended_written", page.ended_written),
    ];
    let mut names: Vec<&'static str> = named.iter().filter(|(_, v)| *v >= IMPLAUSIBLE).map(|(n, _)| *n).collect();
    let too_big = |values: &[u64]| values.iter().any(|&v| v >= IMPLAUSIBLE);
    if too_big(&page.traps) {
        names.push("traps");
    }
    if too_big(&page.calls) {
        names.push("calls");
    }
    let proc_counts = |p: &ProcStats| {
        let counts = [p.ticks, p.scheduled, p.voluntary, p.involuntary, p.faults, p.user_cycles];
        too_big(&counts) || too_big(&p.syscalls)
    };
    if page.procs.iter().any(proc_counts) {
        names.push("procs");
    }
    names
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
    use lde_abi::stats::EVENTS;

    #[test]
    fn the_kernel_exports_its_stats_page() {
        let addr = find_symbol(crate::guest::KERNEL, STATS_SYMBOL).expect("LDE_STATS in the kernel");
        assert_eq!(addr % 4096, 0, "page-aligned");
        assert!(addr >= 0x10_0000);
        assert_eq!(find_symbol(crate::guest::KERNEL, "no_such_symbol_here"), None);
        assert_eq!(find_symbol(b"not an elf", STATS_SYMBOL), None);
        // The symbol table and the section headers are near the end: no cut keeps them.
        for cut in [0, 10, 64, 200, 4096, crate::guest::KERNEL.len() - 1] {
            assert_eq!(find_symbol(&crate::guest::KERNEL[..cut], STATS_SYMBOL), None, "cut at {cut}");
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

    #[test]
    fn counters_no_kernel_reaches_are_named() {
        let mut page = StatsPage::new();
        assert!(implausible(&page).is_empty());
        page.ticks = IMPLAUSIBLE - 1;
        page.now_tsc = u64::MAX;
        assert!(implausible(&page).is_empty(), "a TSC stamp may be anything");
        page.syscall_arch = u64::MAX;
        page.traps[200] = IMPLAUSIBLE;
        page.procs[3].syscalls[1] = u64::MAX;
        assert_eq!(implausible(&page), ["syscall_arch", "traps", "procs"]);
    }

    #[test]
    fn rings_are_read_from_where_the_reader_left_off() {
        let kernel = crate::guest::KERNEL;
        let addr = find_symbol(kernel, STATS_SYMBOL).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let reader = StatsReader::new(mem.clone(), kernel).unwrap();
        let events_at = addr + std::mem::offset_of!(StatsPage, events) as u64;
        let written_at = addr + std::mem::offset_of!(StatsPage, events_written) as u64;
        let write_event = |i: u64, seq: u64| {
            let e = Event { seq, tsc: 100 + i, kind: 3, cpu: 0, pid: 1, arg: 0 };
            let at = events_at + (i % EVENTS as u64) * 24;
            mem.write_obj(e.seq, GuestAddress(at)).unwrap();
            mem.write_obj(e.tsc, GuestAddress(at + 8)).unwrap();
            mem.write_obj(e.kind, GuestAddress(at + 16)).unwrap();
        };
        for i in 0..5 {
            write_event(i, i + 1);
        }
        mem.write_obj(5u64, GuestAddress(written_at)).unwrap();
        let (events, RingRead { next, lost, .. }) = reader.events_since(0).unwrap();
        assert_eq!((events.len(), next, lost), (5, 5, 0));
        assert_eq!(events[4].tsc, 104);
        // Two more, one of them caught mid-rewrite (seq 0): it counts as lost.
        write_event(5, 6);
        write_event(6, 0);
        mem.write_obj(7u64, GuestAddress(written_at)).unwrap();
        let (events, RingRead { next, lost, .. }) = reader.events_since(next).unwrap();
        assert_eq!((events.len(), next, lost), (1, 7, 1));
        // The ring wrapped past the reader: everything older than one ring is lost.
        mem.write_obj(7 + EVENTS as u64 + 3, GuestAddress(written_at)).unwrap();
        let (_, RingRead { next, lost, .. }) = reader.events_since(7).unwrap();
        assert_eq!(next, 7 + EVENTS as u64 + 3);
        assert!(lost >= 3, "{lost}");
    }
}
