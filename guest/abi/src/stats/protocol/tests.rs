//! A writer thread racing the reader, and the reader's answers to lapped, busy and stopped pages.

extern crate std;

use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use core::mem::size_of;
use core::sync::atomic::Ordering;

use super::{ended_since, events_since, snapshot, snapshot_stopped, PageBytes, ReadError, RingRead};
use crate::stats::{ProcStats, StatsPage, EVENTS};

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
    page.push_event(n, n as u8, (n % 8) as u8, n as u16, n as u32);
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
                assert_eq!(
                    (e.tsc, e.kind, e.cpu, e.pid, e.arg),
                    (n, n as u8, (n % 8) as u8, n as u16, n as u32),
                    "torn event"
                );
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
