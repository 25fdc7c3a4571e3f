//! Follows the kernel's stats page during a run: the latest counters, every scheduling event,
//! and the final accounting of every process, read without stopping the guest.

use std::collections::BTreeMap;

use lde_abi::stats::{Event, ProcStats, StatsPage, STATE_FREE};

use crate::observe::stats::{Error, StatsReader};

/// Most events kept for one run (about 24 MiB); later ones are counted as dropped.
pub const MAX_EVENTS: usize = 1_000_000;

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
        }
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

    fn poll_rings(&mut self) -> Result<(), Error> {
        let (events, next, lost) = self.reader.events_since(self.events_from)?;
        self.events_from = next;
        self.events_lost += lost;
        let room = MAX_EVENTS.saturating_sub(self.events.len());
        self.events_lost += events.len().saturating_sub(room) as u64;
        self.events.extend(events.into_iter().take(room));
        let (ended, next, lost) = self.reader.ended_since(self.ended_from)?;
        self.ended_from = next;
        self.ended_lost += lost;
        for p in ended {
            self.ended.insert(p.pid, p);
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
