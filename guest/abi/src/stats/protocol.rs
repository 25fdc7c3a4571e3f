//! The stats-page protocol: how the kernel (the writer, on the guest's one CPU) publishes
//! [`StatsPage`] and how the host (the reader, on another CPU, without a VM exit) copies it
//! without ever seeing a half-written value. Both halves live here, side by side.
//!
//! Invariants:
//! - **Counters** (every field before `ended_written`) form one seqlock. The writer makes
//!   [`StatsPage::seq`] odd before it changes any of them and even again after the last
//!   change ([`StatsPage::update`]). The reader reads `seq`, retries while it is odd, copies
//!   the counters, reads `seq` again, and retries unless it is unchanged ([`snapshot`]).
//! - **Rings** (`events`, `ended`) carry a sequence number per entry: entry `n` (counted from
//!   0 since boot) lives in slot `n % capacity` and is written with its own `seq` set to 0
//!   first, then its body, then `seq` = `n + 1` last; only then does the ring's `*_written`
//!   count become `n + 1` ([`StatsPage::push_event`], [`StatsPage::push_ended`]). The reader
//!   reads `*_written`, drops the entries older than `written - capacity` (overwritten), and
//!   accepts entry `n` only if its `seq` equals `n + 1` both in the copy and when read again
//!   after the copy; otherwise the writer lapped the reader while it copied, and the entry is
//!   counted as lost ([`ring_since`]).
//!
//! The writer keeps its stores in order with volatile writes and compiler fences (x86 does not
//! reorder stores with stores); the reader orders its loads with acquire fences (x86 does not
//! reorder loads with loads).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{compiler_fence, fence, Ordering};

use super::{Ended, Event, ProcStats, StatsPage, ENDED, EVENTS};

// ---------------------------------------------------------------------------------------------
// Writer half: the kernel.

impl StatsPage {
    /// Runs `f` on the counters inside one seqlock write section.
    pub fn update<R>(&mut self, f: impl FnOnce(&mut StatsPage) -> R) -> R {
        // SAFETY: a plain u64 field of this page; volatile so the reader sees each step.
        unsafe { core::ptr::write_volatile(&mut self.seq, self.seq.wrapping_add(1)) };
        compiler_fence(Ordering::SeqCst);
        let r = f(self);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut self.seq, self.seq.wrapping_add(1)) };
        r
    }

    /// Appends an event to the event ring (its own `seq` is written 0 first and `n + 1` last).
    pub fn push_event(&mut self, tsc: u64, kind: u16, pid: u16, arg: u32) {
        let n = self.events_written;
        let slot = &mut self.events[(n as usize) & (EVENTS - 1)];
        // SAFETY: a plain u64 field of this page; seq 0 marks the entry as being rewritten.
        unsafe { core::ptr::write_volatile(&mut slot.seq, 0) };
        compiler_fence(Ordering::SeqCst);
        slot.tsc = tsc;
        slot.kind = kind;
        slot.pid = pid;
        slot.arg = arg;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut slot.seq, n + 1) };
        compiler_fence(Ordering::SeqCst);
        // SAFETY: a plain u64 field of this page, published after the entry it counts.
        unsafe { core::ptr::write_volatile(&mut self.events_written, n + 1) };
    }

    /// Appends an ended process's final accounting to the ring of ended processes.
    pub fn push_ended(&mut self, proc: ProcStats) {
        let n = self.ended_written;
        let entry = &mut self.ended[(n as usize) & (ENDED - 1)];
        // SAFETY: a plain u64 field of this page; seq 0 marks the entry as being rewritten.
        unsafe { core::ptr::write_volatile(&mut entry.seq, 0) };
        compiler_fence(Ordering::SeqCst);
        entry.proc = proc;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut entry.seq, n + 1) };
        compiler_fence(Ordering::SeqCst);
        // SAFETY: a plain u64 field of this page, published after the entry it counts.
        unsafe { core::ptr::write_volatile(&mut self.ended_written, n + 1) };
    }
}

// ---------------------------------------------------------------------------------------------
// Reader half: the host.

/// The bytes of a live stats page, as the reader reaches them (on the host: guest memory).
pub trait PageBytes {
    type Error;

    /// Copies `buf.len()` bytes from `offset` bytes into the page.
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Called between retries while the writer is mid-update.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// Why a read of the page failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The bytes could not be read.
    Memory(E),
    /// The writer kept updating the counters through every try.
    Busy,
}

/// How far a ring was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRead {
    /// The index to continue from next time.
    pub next: u64,
    /// Entries written since the last read that were overwritten before they could be read.
    pub lost: u64,
    /// The ring's `*_written` count was below where the last read ended: it went backwards,
    /// which the writer never does (2^64 entries cannot be written). The reader keeps its place
    /// (`next` never goes backwards) and reads nothing until the count passes it again.
    pub went_back: bool,
}

/// Tries a snapshot makes before it gives up with [`ReadError::Busy`].
pub const SNAPSHOT_TRIES: usize = 10_000;

/// Marks the plain-integer `repr(C)` types of the page that may be filled from any bytes.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`.
unsafe trait Plain: Copy {}
// SAFETY: repr(C) structs of integers (and arrays of them, and of such structs) only.
unsafe impl Plain for StatsPage {}
// SAFETY: as above.
unsafe impl Plain for Event {}
// SAFETY: as above.
unsafe impl Plain for Ended {}
// SAFETY: an integer.
unsafe impl Plain for u64 {}

/// The first `len` bytes of `value`, writable.
fn bytes_of<T: Plain>(value: &mut T, len: usize) -> &mut [u8] {
    assert!(len <= size_of::<T>());
    // SAFETY: `value` is a live, exclusively borrowed T of at least `len` bytes, and any bytes
    // written through the slice leave a valid T (`Plain`).
    unsafe { core::slice::from_raw_parts_mut((value as *mut T).cast::<u8>(), len) }
}

fn read_plain<T: Plain, M: PageBytes>(mem: &M, offset: usize, value: &mut T) -> Result<(), ReadError<M::Error>> {
    mem.read(offset, bytes_of(value, size_of::<T>())).map_err(ReadError::Memory)
}

fn read_u64<M: PageBytes>(mem: &M, offset: usize) -> Result<u64, ReadError<M::Error>> {
    let mut v = 0u64;
    read_plain(mem, offset, &mut v)?;
    Ok(v)
}

/// Copies the counters and process slots (everything before `ended_written`) into `out`, from
/// one moment between two updates. The rings of `out` are left as they were.
pub fn snapshot<M: PageBytes>(mem: &M, out: &mut StatsPage) -> Result<(), ReadError<M::Error>> {
    let seq_at = offset_of!(StatsPage, seq);
    let counters = offset_of!(StatsPage, ended_written);
    for _ in 0..SNAPSHOT_TRIES {
        let before = read_u64(mem, seq_at)?;
        if before % 2 == 1 {
            mem.relax();
            continue;
        }
        fence(Ordering::Acquire);
        mem.read(0, bytes_of(out, counters)).map_err(ReadError::Memory)?;
        fence(Ordering::Acquire);
        if read_u64(mem, seq_at)? == before {
            return Ok(());
        }
    }
    Err(ReadError::Busy)
}

/// Copies the counters as [`snapshot`] does, once the writer can no longer run (the guest has
/// stopped): a single copy, whatever `seq` says. Returns whether the copy may be torn (the
/// guest stopped inside an update, so some counters may be from before it and some after).
pub fn snapshot_stopped<M: PageBytes>(mem: &M, out: &mut StatsPage) -> Result<bool, ReadError<M::Error>> {
    let counters = offset_of!(StatsPage, ended_written);
    mem.read(0, bytes_of(out, counters)).map_err(ReadError::Memory)?;
    Ok(out.seq % 2 == 1)
}

/// Where a ring lives in the page.
struct Ring {
    /// Offset of its `*_written` count.
    written_at: usize,
    /// Offset of its first slot.
    slots_at: usize,
    capacity: usize,
}

/// Reads the entries of a ring written after index `from` and hands each one that was read
/// whole to `accept`, oldest first.
fn ring_since<T: Plain, M: PageBytes>(
    mem: &M,
    from: u64,
    ring: Ring,
    empty: T,
    seq_of: impl Fn(&T) -> u64,
    mut accept: impl FnMut(T),
) -> Result<RingRead, ReadError<M::Error>> {
    let Ring { written_at, slots_at, capacity } = ring;
    let written = read_u64(mem, written_at)?;
    fence(Ordering::Acquire);
    let oldest = written.saturating_sub(capacity as u64);
    let start = from.max(oldest);
    let mut lost = start - from.min(start);
    for i in start..written {
        let at = slots_at + (i as usize % capacity) * size_of::<T>();
        let mut entry = empty;
        read_plain(mem, at, &mut entry)?;
        fence(Ordering::Acquire);
        // The entry's seq again, now that its body is copied: if the writer started to rewrite
        // the slot meanwhile, the copy may mix two entries even though its own seq looks right.
        let seq_after = read_u64(mem, at)?;
        if seq_of(&entry) == i + 1 && seq_after == i + 1 {
            accept(entry);
        } else {
            lost += 1;
        }
    }
    Ok(RingRead { next: written.max(from), lost, went_back: written < from })
}

/// Scheduling events written after index `from`, handed to `accept` oldest first.
pub fn events_since<M: PageBytes>(
    mem: &M,
    from: u64,
    accept: impl FnMut(Event),
) -> Result<RingRead, ReadError<M::Error>> {
    let ring = Ring {
        written_at: offset_of!(StatsPage, events_written),
        slots_at: offset_of!(StatsPage, events),
        capacity: EVENTS,
    };
    ring_since(mem, from, ring, Event::default(), |e: &Event| e.seq, accept)
}

/// Final accounting of processes that ended after index `from`, handed to `accept` oldest
/// first.
pub fn ended_since<M: PageBytes>(
    mem: &M,
    from: u64,
    mut accept: impl FnMut(ProcStats),
) -> Result<RingRead, ReadError<M::Error>> {
    let ring = Ring {
        written_at: offset_of!(StatsPage, ended_written),
        slots_at: offset_of!(StatsPage, ended),
        capacity: ENDED,
    };
    let empty = Ended { seq: 0, proc: ProcStats::EMPTY };
    ring_since(mem, from, ring, empty, |e: &Ended| e.seq, |e| accept(e.proc))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::boxed::Box;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::time::{Duration, Instant};

    use super::*;

    /// A page shared between a writer thread and the reader, read with volatile byte copies
    /// (as the host reads guest memory).
    struct Shared(*mut StatsPage);

    // SAFETY: the page outlives both threads (joined before it is freed); the writer is the
    // only one that writes, and the protocol under test is what makes the reads meaningful.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}

    impl Shared {
        fn page(&self) -> *mut StatsPage {
            self.0
        }
    }

    impl PageBytes for Shared {
        type Error = ();

        fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), ()> {
            if offset + buf.len() > size_of::<StatsPage>() {
                return Err(());
            }
            let base = self.0.cast::<u8>();
            for (i, b) in buf.iter_mut().enumerate() {
                // SAFETY: in bounds of the live page (checked above).
                *b = unsafe { core::ptr::read_volatile(base.add(offset + i)) };
            }
            Ok(())
        }

        fn relax(&self) {
            std::thread::yield_now();
        }
    }

    struct StopOnDrop<'a>(&'a AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// The writer's pattern: in update k every watched counter is k, and event n carries n in
    /// every field, so a torn copy shows as a mismatch.
    fn write_update(page: &mut StatsPage, k: u64) {
        page.update(|p| {
            p.ticks = k;
            p.switches = k;
            p.traps[255] = k;
            p.procs[15].user_cycles = k;
        });
        let n = page.events_written;
        page.push_event(n, n as u16, n as u16, n as u32);
        // Fewer ends than events, or the reader could never catch the small ring unlapped.
        if k & 1023 == 0 {
            let n = page.ended_written;
            let mut proc = ProcStats::EMPTY;
            proc.ticks = n;
            proc.end_rip = n;
            page.push_ended(proc);
        }
    }

    /// Snapshots and events the racing reader must accept before it stops (and at least one
    /// ended entry).
    const ENOUGH: u64 = 200;

    #[test]
    fn a_reader_racing_a_writer_never_accepts_a_torn_copy() {
        let page = Box::into_raw(Box::new(StatsPage::new()));
        let shared = Shared(page);
        let stop = AtomicBool::new(false);
        let (mut events_from, mut ended_from) = (0, 0);
        let updates = AtomicU64::new(0);
        let (mut snapshots, mut events, mut ended, mut lost, mut ended_lost) = (0u64, 0u64, 0u64, 0u64, 0u64);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    // SAFETY: this thread is the page's only writer.
                    write_update(unsafe { &mut *shared.page() }, k);
                    // Bursts of updates race the reader; a pause after each lets a whole copy
                    // through now and then, however loaded the host (without it a reader
                    // copying the whole page was torn nearly every time: 133 whole copies in
                    // 120 s with both cores busy).
                    if k % 256 == 0 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                updates.store(k, Ordering::Relaxed);
            });
            // Stops the writer however the reader leaves, a failed assertion included.
            let _stop = StopOnDrop(&stop);
            let mut copy = Box::new(StatsPage::new());
            // Until the reader has seen enough of each kind, read whole, while the writer ran
            // on: events, not a time, so that a slow or loaded host runs it as long as it
            // takes. The deadline only turns a reader that never gets a copy into a failure.
            let deadline = Instant::now() + Duration::from_secs(120);
            while snapshots < ENOUGH || events < ENOUGH || ended < 1 {
                assert!(
                    Instant::now() < deadline,
                    "after 120 s: {snapshots} snapshots, {events} events, {ended} ends read"
                );
                if snapshot(&shared, &mut copy).is_ok() {
                    let k = copy.ticks;
                    assert_eq!([copy.switches, copy.traps[255], copy.procs[15].user_cycles], [k; 3], "torn snapshot");
                    snapshots += 1;
                }
                let read = events_since(&shared, events_from, |e| {
                    let n = e.seq - 1;
                    assert_eq!((e.tsc, e.kind, e.pid, e.arg), (n, n as u16, n as u16, n as u32), "torn event");
                    events += 1;
                })
                .unwrap();
                events_from = read.next;
                lost += read.lost;
                let read = ended_since(&shared, ended_from, |p| {
                    assert_eq!(p.ticks, p.end_rip, "torn ended entry");
                    ended += 1;
                })
                .unwrap();
                ended_from = read.next;
                ended_lost += read.lost;
            }
        });
        // SAFETY: both threads are done with the page, which came from Box::into_raw.
        let page = unsafe { Box::from_raw(page) };
        let updates = updates.load(Ordering::Relaxed);
        assert_eq!(page.events_written, updates);
        assert!(snapshots > 0 && events > 0, "{updates} updates: {snapshots} snapshots, {events} events");
        assert_eq!(events + lost, events_from, "every event is read or counted lost");
        assert_eq!(ended + ended_lost, ended_from, "every end is read or counted lost");
        assert!(events_from <= updates && ended_from <= page.ended_written);
    }

    #[test]
    fn a_lapped_entry_is_lost_not_accepted() {
        let mut page = Box::new(StatsPage::new());
        for k in 1..=3 {
            write_update(&mut page, k);
        }
        // Entry 1 is mid-rewrite: its seq says 0.
        page.events[1].seq = 0;
        let shared = Shared(&mut *page);
        let mut seen = std::vec::Vec::new();
        let read = events_since(&shared, 0, |e| seen.push(e.seq)).unwrap();
        assert_eq!((seen, read), (std::vec![1, 3], RingRead { next: 3, lost: 1, went_back: false }));
        // Everything older than one ring is gone.
        page.events_written = 5 + EVENTS as u64;
        let shared = Shared(&mut *page);
        let read = events_since(&shared, 3, |_| {}).unwrap();
        assert_eq!(read.next, 5 + EVENTS as u64);
        assert!(read.lost >= 5, "{read:?}");
        // A count that went backwards (or wrapped past u64::MAX) reads nothing and says so.
        page.events_written = 2;
        let shared = Shared(&mut *page);
        let read = events_since(&shared, 5 + EVENTS as u64, |_| panic!("nothing to accept")).unwrap();
        assert_eq!(read, RingRead { next: 5 + EVENTS as u64, lost: 0, went_back: true });
        // A count at u64::MAX: at most one ring's worth is looked at, and nothing overflows.
        page.events_written = u64::MAX;
        let shared = Shared(&mut *page);
        let read = events_since(&shared, 0, |_| {}).unwrap();
        assert_eq!((read.next, read.lost), (u64::MAX, u64::MAX));
    }

    #[test]
    fn an_update_under_way_is_busy() {
        let mut page = Box::new(StatsPage::new());
        page.seq = 3;
        let shared = Shared(&mut *page);
        assert_eq!(snapshot(&shared, &mut Box::new(StatsPage::new())), Err(ReadError::Busy));
    }

    #[test]
    fn a_stopped_page_is_read_whole_and_marked_when_torn() {
        let mut page = Box::new(StatsPage::new());
        page.switches = 7;
        page.seq = 3;
        let shared = Shared(&mut *page);
        let mut copy = Box::new(StatsPage::new());
        assert_eq!(snapshot_stopped(&shared, &mut copy), Ok(true));
        assert_eq!(copy.switches, 7);
        page.seq = 4;
        let shared = Shared(&mut *page);
        assert_eq!(snapshot_stopped(&shared, &mut copy), Ok(false));
    }
}
