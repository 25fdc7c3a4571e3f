//! Each process's state over time — running, ready, blocked (and why), ended — rebuilt from the
//! kernel's event log, which already says every change and its cause: a spawn, a switch in (the
//! scheduler picked it), a switch out (a yield or the timer), a block (sleep, input, a child, the
//! disk), a wake (the time came, an input or disk interrupt, a child ended), an exit or a kill.
//!
//! The log is the guest's to write: events out of order, for unknown pids or in impossible
//! orders are taken as they come (a state is closed wherever the next one starts), never trusted
//! to add up; an interval never ends before it starts.

use std::collections::BTreeMap;

use lde_abi::stats::{
    Event, EV_BLOCK, EV_EXIT, EV_FAULT, EV_SPAWN, EV_SWITCH_IN, EV_SWITCH_OUT, EV_WAKE, ON_CHILD, ON_DISK, ON_INPUT,
    ON_SLEEP, OUT_BLOCK, OUT_END, OUT_PREEMPT, OUT_YIELD,
};

/// What a process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Ready,
    Running,
    Blocked(Blocked),
    Ended,
}

/// What a blocked process waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blocked {
    Sleep,
    Input,
    Child,
    Disk,
    Unknown,
}

impl Blocked {
    pub fn name(self) -> &'static str {
        match self {
            Blocked::Sleep => "sleep",
            Blocked::Input => "input",
            Blocked::Child => "child",
            Blocked::Disk => "disk",
            Blocked::Unknown => "unknown",
        }
    }
}

impl State {
    /// The state as a line or a slice names it: `blocked (disk)` with its reason.
    pub fn label(self) -> String {
        match self {
            State::Blocked(why) => format!("blocked ({})", why.name()),
            state => state.name().to_string(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Running => "running",
            State::Blocked(_) => "blocked",
            State::Ended => "ended",
        }
    }
}

/// Why a state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    Spawned,
    Picked,
    TimerPreempt,
    Yield,
    Sleep,
    ReadInput,
    Wait,
    Disk,
    SleepDone,
    IrqInput,
    ChildEnded,
    IrqDisk,
    Exit,
    Killed,
    /// An event lde does not know the meaning of.
    Unknown,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Spawned => "spawned",
            Cause::Picked => "picked",
            Cause::TimerPreempt => "timer-preempt",
            Cause::Yield => "yield",
            Cause::Sleep => "sleep",
            Cause::ReadInput => "read-input",
            Cause::Wait => "wait",
            Cause::Disk => "disk",
            Cause::SleepDone => "sleep-done",
            Cause::IrqInput => "irq-input",
            Cause::ChildEnded => "child-ended",
            Cause::IrqDisk => "irq-disk",
            Cause::Exit => "exit",
            Cause::Killed => "killed",
            Cause::Unknown => "unknown",
        }
    }
}

/// One change of one process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub tsc: u64,
    pub pid: u32,
    /// The processor whose event it was (for a switch in: the one it runs on).
    pub cpu: u8,
    pub from: Option<State>,
    pub to: State,
    pub cause: Cause,
}

/// A span of one state, `[from, to)` in TSC cycles, entered for `cause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub state: State,
    /// The processor of the transition that began it (for `Running`: the one it ran on).
    pub cpu: u8,
    pub from: u64,
    pub to: u64,
    pub cause: Cause,
}

/// What an event means for its process: the state it enters and why.
fn meaning(e: &Event) -> Option<(State, Cause)> {
    Some(match (e.kind, e.arg) {
        (EV_SPAWN, _) => (State::Ready, Cause::Spawned),
        (EV_SWITCH_IN, _) => (State::Running, Cause::Picked),
        (EV_SWITCH_OUT, OUT_PREEMPT) => (State::Ready, Cause::TimerPreempt),
        (EV_SWITCH_OUT, OUT_YIELD) => (State::Ready, Cause::Yield),
        // The block or the end was logged just before, with its reason.
        (EV_SWITCH_OUT, OUT_BLOCK | OUT_END) => return None,
        (EV_BLOCK, ON_SLEEP) => (State::Blocked(Blocked::Sleep), Cause::Sleep),
        (EV_BLOCK, ON_INPUT) => (State::Blocked(Blocked::Input), Cause::ReadInput),
        (EV_BLOCK, ON_CHILD) => (State::Blocked(Blocked::Child), Cause::Wait),
        (EV_BLOCK, ON_DISK) => (State::Blocked(Blocked::Disk), Cause::Disk),
        (EV_BLOCK, _) => (State::Blocked(Blocked::Unknown), Cause::Unknown),
        (EV_WAKE, ON_SLEEP) => (State::Ready, Cause::SleepDone),
        (EV_WAKE, ON_INPUT) => (State::Ready, Cause::IrqInput),
        (EV_WAKE, ON_CHILD) => (State::Ready, Cause::ChildEnded),
        (EV_WAKE, ON_DISK) => (State::Ready, Cause::IrqDisk),
        (EV_WAKE, _) => (State::Ready, Cause::Unknown),
        (EV_EXIT, _) => (State::Ended, Cause::Exit),
        (EV_FAULT, _) => (State::Ended, Cause::Killed),
        _ => return None,
    })
}

/// Every state change in `events`, in log order. A change to the state a process is already in
/// is no change (a wake of a process that was not blocked, say) and is left out.
pub fn transitions(events: &[Event]) -> Vec<Transition> {
    let mut now: BTreeMap<u32, State> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let Some((to, cause)) = meaning(e) else { continue };
        let pid = u32::from(e.pid);
        let from = now.get(&pid).copied();
        if from == Some(to) || from == Some(State::Ended) {
            continue;
        }
        now.insert(pid, to);
        out.push(Transition { tsc: e.tsc, pid, cpu: e.cpu, from, to, cause });
    }
    out
}

/// Each pid's intervals, in order, from its transitions; the last one of a process still alive
/// runs to `end`.
pub fn intervals(transitions: &[Transition], end: u64) -> BTreeMap<u32, Vec<Interval>> {
    let mut by_pid: BTreeMap<u32, Vec<Interval>> = BTreeMap::new();
    let mut ended = std::collections::BTreeSet::new();
    for t in transitions {
        let list = by_pid.entry(t.pid).or_default();
        if let Some(last) = list.last_mut() {
            last.to = t.tsc.max(last.from);
        }
        match t.to {
            State::Ended => _ = ended.insert(t.pid),
            state => list.push(Interval { state, cpu: t.cpu, from: t.tsc, to: t.tsc, cause: t.cause }),
        }
    }
    for (pid, list) in &mut by_pid {
        if let Some(last) = list.last_mut().filter(|_| !ended.contains(pid)) {
            last.to = end.max(last.from);
        }
    }
    by_pid
}

/// Cycles spent in running, ready and blocked, for one process's intervals.
pub fn time_in_states(intervals: &[Interval]) -> (u64, u64, u64) {
    let mut t = (0u64, 0u64, 0u64);
    for i in intervals {
        let span = i.to.saturating_sub(i.from);
        match i.state {
            State::Running => t.0 = t.0.saturating_add(span),
            State::Ready => t.1 = t.1.saturating_add(span),
            State::Blocked(_) => t.2 = t.2.saturating_add(span),
            State::Ended => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tsc: u64, kind: u8, pid: u16, arg: u32) -> Event {
        Event { seq: 0, tsc, kind, cpu: 0, pid, arg }
    }

    #[test]
    fn a_sleeper_runs_blocks_wakes_and_exits() {
        let events = [
            ev(10, EV_SPAWN, 1, 0),
            ev(20, EV_SWITCH_IN, 1, 0),
            ev(30, EV_BLOCK, 1, 0),
            ev(31, EV_SWITCH_OUT, 1, OUT_BLOCK),
            ev(50, EV_WAKE, 1, 0),
            ev(60, EV_SWITCH_IN, 1, 0),
            ev(70, EV_SWITCH_OUT, 1, OUT_PREEMPT),
            ev(80, EV_SWITCH_IN, 1, 0),
            ev(90, EV_EXIT, 1, 0),
            ev(91, EV_SWITCH_OUT, 1, OUT_END),
        ];
        let t = transitions(&events);
        let causes: Vec<&str> = t.iter().map(|t| t.cause.name()).collect();
        assert_eq!(causes, ["spawned", "picked", "sleep", "sleep-done", "picked", "timer-preempt", "picked", "exit"]);
        let i = &intervals(&t, 100)[&1];
        let spans: Vec<(State, u64, u64)> = i.iter().map(|i| (i.state, i.from, i.to)).collect();
        assert_eq!(
            spans,
            [
                (State::Ready, 10, 20),
                (State::Running, 20, 30),
                (State::Blocked(Blocked::Sleep), 30, 50),
                (State::Ready, 50, 60),
                (State::Running, 60, 70),
                (State::Ready, 70, 80),
                (State::Running, 80, 90),
            ]
        );
        assert_eq!(time_in_states(i), (30, 30, 20));
    }

    #[test]
    fn a_hostile_log_gives_intervals_that_never_run_backwards() {
        let events = [
            ev(u64::MAX, EV_SWITCH_IN, 7, 0),
            ev(0, EV_BLOCK, 7, 99),
            ev(5, EV_WAKE, 8, 0),
            ev(3, EV_EXIT, 7, 0),
            ev(9, EV_SWITCH_IN, 7, 0), // after its end: ignored
        ];
        let i = intervals(&transitions(&events), 4);
        for list in i.values() {
            assert!(list.iter().all(|i| i.to >= i.from), "{list:?}");
        }
        assert_eq!(i[&7].len(), 2);
    }
}
