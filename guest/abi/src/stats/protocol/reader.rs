//! The reader half of the stats-page protocol (see [`super`]): the host, on another CPU,
//! copies the page through [`PageBytes`] and orders its loads with acquire fences.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use crate::stats::{Ended, Event, ProcStats, StatsPage, ENDED, EVENTS};

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
