//! The timeline's spans, read from the event log: when each process ran, and per processor what
//! ran on it, the kernel's own time and the idle loop.

use std::collections::BTreeMap;

use lde_abi::stats::{Event, EV_EXIT, EV_FAULT, EV_IDLE, EV_SWITCH_IN, EV_SWITCH_OUT};

use super::Span;

/// Running slices per pid, and per processor what ran on it, its kernel time (from a switch out
/// to the next switch in) and its idle time.
pub(super) struct Lanes {
    pub(super) slices: BTreeMap<u32, Vec<Span>>,
    pub(super) cpus: BTreeMap<u8, CpuLane>,
}

/// One processor's time: the processes it ran (pid, span), the kernel's switching and ending,
/// its idle loop.
#[derive(Default)]
pub(super) struct CpuLane {
    pub(super) ran: Vec<(u32, Span)>,
    pub(super) kernel: Vec<Span>,
    pub(super) idle: Vec<Span>,
}

/// Where one processor stands while the events are read.
#[derive(Default)]
struct CpuState {
    running: Option<(u32, u64)>,
    out_at: Option<u64>,
    idle_at: Option<u64>,
}

impl Lanes {
    pub(super) fn new(events: &[Event], pids: impl Iterator<Item = u32>, end: u64) -> Lanes {
        let mut lanes = Lanes { slices: pids.map(|pid| (pid, Vec::new())).collect(), cpus: BTreeMap::new() };
        let mut states: BTreeMap<u8, CpuState> = BTreeMap::new();
        for e in events {
            let pid = u32::from(e.pid);
            let (state, lane) = (states.entry(e.cpu).or_default(), lanes.cpus.entry(e.cpu).or_default());
            let mut ran = |p: u32, span: Span| {
                lanes.slices.entry(p).or_default().push(span);
                lane.ran.push((p, span));
            };
            match e.kind {
                EV_SWITCH_IN => {
                    if let Some(from) = state.idle_at.take() {
                        lane.idle.push(Span { from, to: e.tsc });
                    } else if let Some(from) = state.out_at.take() {
                        lane.kernel.push(Span { from, to: e.tsc });
                    }
                    if let Some((p, from)) = state.running.take() {
                        ran(p, Span { from, to: e.tsc });
                    }
                    state.running = Some((pid, e.tsc));
                }
                // A process stops running where it exits or is killed; what follows until the
                // switch (its last lines, freeing its memory) is the kernel's.
                EV_SWITCH_OUT | EV_EXIT | EV_FAULT => {
                    if let Some((p, from)) = state.running.take_if(|(p, _)| *p == pid) {
                        ran(p, Span { from, to: e.tsc });
                    }
                    state.out_at.get_or_insert(e.tsc);
                }
                EV_IDLE => {
                    if let Some(from) = state.out_at.take() {
                        lane.kernel.push(Span { from, to: e.tsc });
                    }
                    state.idle_at.get_or_insert(e.tsc);
                }
                _ => {}
            }
        }
        // What each processor was doing when the log ends runs to its end.
        for (cpu, state) in states {
            let lane = lanes.cpus.entry(cpu).or_default();
            if let Some((p, from)) = state.running {
                let span = Span { from, to: end };
                lanes.slices.entry(p).or_default().push(span);
                lane.ran.push((p, span));
            } else if let Some(from) = state.idle_at {
                lane.idle.push(Span { from, to: end.max(from) });
            } else if let Some(from) = state.out_at {
                lane.kernel.push(Span { from, to: end.max(from) });
            }
        }
        if lanes.cpus.is_empty() {
            lanes.cpus.insert(0, CpuLane::default());
        }
        lanes
    }
}
