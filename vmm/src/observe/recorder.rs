//! Follows the kernel's stats page during a run: the latest counters, every scheduling event,
//! and the final accounting of every process, read without stopping the guest.

use std::collections::BTreeMap;

use lde_abi::stats::{Event, ProcStats, StatsPage, STATE_FREE};

use crate::observe::stats_page::{Error, StatsReader};

/// Most events kept for one run (about 24 MiB); later ones are counted as dropped.
pub const MAX_EVENTS: usize = 1_000_000;
/// Most ended processes kept for one run (the kernel names their pids: a hostile one could
/// name a new one at every poll); later ones are counted in [`Recorder::ended_lost`].
pub const MAX_ENDED: usize = 100_000;

/// What has been read so far.
pub struct Recorder {
    reader: StatsReader,
    events_from: u64,
    ended_from: u64,
    /// Events in the order the kernel wrote them.
    pub events: Vec<Event>,
    /// Events the kernel overwrote before lde read them, or beyond [`MAX_EVENTS`].
    pub events_lost: u64,
    /// Processes that ended, by pid.
    pub ended: BTreeMap<u32, ProcStats>,
    /// Ended processes whose entry was overwritten before lde read it.
    pub ended_lost: u64,
    /// The latest counters.
    pub last: Option<Box<StatsPage>>,
    /// The guest stopped in the middle of an update, so `last` may be torn.
    pub torn: bool,
    /// The kernel's count of events or of ended processes went backwards at some poll (or
    /// wrapped past `u64::MAX`): no honest kernel does that, so its rings are not to be trusted.
    pub rings_went_back: bool,
}

impl Recorder {
    pub fn new(reader: StatsReader) -> Recorder {
        Recorder {
            reader,
            events_from: 0,
            ended_from: 0,
            events: Vec::new(),
            events_lost: 0,
            ended: BTreeMap::new(),
            ended_lost: 0,
            last: None,
            torn: false,
            rings_went_back: false,
        }
    }

    /// A recorder over a blank guest memory holding the built-in kernel's page (unit tests).
    #[cfg(test)]
    pub(crate) fn new_for_tests() -> Recorder {
        use vm_memory::{GuestAddress, GuestMemoryMmap};
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("16 MiB of test memory");
        Recorder::new(StatsReader::new(mem, crate::guest::KERNEL).expect("the built-in kernel has a stats page"))
    }

    /// Reads what is new while the guest runs.
    pub fn poll(&mut self) -> Result<(), Error> {
        self.poll_rings()?;
        self.last = Some(self.reader.snapshot()?);
        Ok(())
    }

    /// Reads what is new after the guest stopped for good: the counters are taken even if it
    /// stopped inside an update (then marked [`Recorder::torn`]), so a crash keeps them.
    pub fn poll_stopped(&mut self) -> Result<(), Error> {
        self.poll_rings()?;
        let (page, torn) = self.reader.snapshot_stopped()?;
        self.last = Some(page);
        self.torn = torn;
        Ok(())
    }

    /// Every count here comes from the kernel's page, the guest's to write: added with
    /// saturation, so that a hostile page gives large figures, never wrapped ones.
    fn poll_rings(&mut self) -> Result<(), Error> {
        let (events, read) = self.reader.events_since(self.events_from)?;
        self.events_from = read.next;
        self.events_lost = self.events_lost.saturating_add(read.lost);
        let room = MAX_EVENTS.saturating_sub(self.events.len());
        self.events_lost = self.events_lost.saturating_add(events.len().saturating_sub(room) as u64);
        self.events.extend(events.into_iter().take(room));
        let (ended, ended_read) = self.reader.ended_since(self.ended_from)?;
        self.ended_from = ended_read.next;
        self.ended_lost = self.ended_lost.saturating_add(ended_read.lost);
        self.rings_went_back |= read.went_back || ended_read.went_back;
        for p in ended {
            if self.ended.len() < MAX_ENDED || self.ended.contains_key(&p.pid) {
                self.ended.insert(p.pid, p);
            } else {
                self.ended_lost = self.ended_lost.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Events the kernel has written since boot (recorded or lost).
    pub fn events_written(&self) -> u64 {
        self.events_from
    }

    /// Every process seen: the ended ones and those still in the table, by pid.
    pub fn processes(&self) -> Vec<ProcStats> {
        let mut all = self.ended.clone();
        if let Some(page) = &self.last {
            for p in page.procs.iter().filter(|p| p.state != STATE_FREE && p.pid != 0) {
                all.entry(p.pid).or_insert(*p);
            }
        }
        all.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn ring_counts_from_a_hostile_page_saturate_and_going_back_is_flagged() {
        let mut recorder = Recorder::new_for_tests();
        let addr = crate::observe::stats_page::find_symbol(crate::guest::KERNEL, lde_abi::stats::STATS_SYMBOL).unwrap();
        let mem = recorder.reader.memory().clone();
        let events_written = GuestAddress(addr + offset_of!(StatsPage, events_written) as u64);
        // Two polls that each find nearly 2^63 events overwritten: more lost than a u64 holds.
        for written in [1 << 63, u64::MAX] {
            mem.write_obj(written, events_written).unwrap();
            recorder.poll_rings().unwrap();
        }
        assert_eq!(recorder.events_lost, u64::MAX);
        assert_eq!(recorder.events_written(), u64::MAX);
        assert!(!recorder.rings_went_back);
        // The count wraps past u64::MAX to 3.
        mem.write_obj(3u64, events_written).unwrap();
        recorder.poll_rings().unwrap();
        assert!(recorder.rings_went_back);
        assert_eq!((recorder.events_written(), recorder.events_lost), (u64::MAX, u64::MAX));
    }
}
