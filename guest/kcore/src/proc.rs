//! The process table and the round-robin run queue. A slot holds one process whole: its
//! bookkeeping, which is this crate's and testable on the host, and the kernel's machine state
//! for it (address space, saved registers), a type parameter this crate never looks inside.
//!
//! Every operation is O(1) or O(processes). One process is `proc/process.rs`; the table's unit
//! tests are `proc/tests.rs`.

mod process;
#[cfg(test)]
mod tests;

pub use process::{Accounting, End, MachineState, Proc, State};

/// Most processes alive at once.
pub const MAX_PROCS: usize = 16;
/// Longest process name kept (longer names are cut).
pub const NAME_MAX: usize = 16;

/// What `wait` finds for the running process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// This child ended (and is now reported).
    Ended(u32),
    /// Children are alive and none has ended unreported: block until one ends.
    Block,
    /// No child is alive and every one that ended has been reported.
    NoChild,
}

/// All processes, each with its machine state `M`, and the run queue.
pub struct Table<M> {
    procs: [Proc<M>; MAX_PROCS],
    queue: [usize; MAX_PROCS],
    head: usize,
    queued: usize,
    next_pid: u32,
}

impl<M: MachineState> Default for Table<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: MachineState> Table<M> {
    pub const fn new() -> Self {
        Table { procs: [const { Proc::FREE }; MAX_PROCS], queue: [0; MAX_PROCS], head: 0, queued: 0, next_pid: 1 }
    }
}

impl<M> Table<M> {
    pub fn get(&self, slot: usize) -> &Proc<M> {
        &self.procs[slot]
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut Proc<M> {
        &mut self.procs[slot]
    }

    /// Takes a free slot for a new process spawned by `parent` (a pid; 0 = the kernel), not yet
    /// runnable: call [`Table::make_ready`].
    pub fn alloc(&mut self, name: &str, parent: u32) -> Option<usize> {
        let slot = self.procs.iter().position(|p| p.state == State::Free)?;
        self.procs[slot].start(self.next_pid, name, parent);
        self.next_pid += 1;
        Some(slot)
    }

    /// Puts a process at the tail of the run queue.
    pub fn make_ready(&mut self, slot: usize) {
        debug_assert!(self.queued < MAX_PROCS);
        self.procs[slot].state = State::Ready;
        self.queue[(self.head + self.queued) % MAX_PROCS] = slot;
        self.queued += 1;
    }

    /// Takes the process at the head of the run queue and makes it running. Which processor
    /// runs it is the kernel's to remember (its per-CPU data): the table keeps no "current".
    pub fn pick_next(&mut self) -> Option<usize> {
        if self.queued == 0 {
            return None;
        }
        let slot = self.queue[self.head];
        self.head = (self.head + 1) % MAX_PROCS;
        self.queued -= 1;
        let p = &mut self.procs[slot];
        p.state = State::Running;
        p.acct.scheduled += 1;
        Some(slot)
    }

    /// Number of processes waiting in the run queue.
    pub fn ready_count(&self) -> usize {
        self.queued
    }

    /// The running process in `slot` gives up the CPU but stays runnable (`voluntary`: it
    /// asked).
    pub fn preempt(&mut self, slot: usize, voluntary: bool) {
        debug_assert_eq!(self.procs[slot].state, State::Running);
        let acct = &mut self.procs[slot].acct;
        if voluntary {
            acct.voluntary += 1;
        } else {
            acct.involuntary += 1;
        }
        self.make_ready(slot);
    }

    /// The running process in `slot` blocks (sleeping, reading, waiting or on a disk).
    pub fn block(&mut self, slot: usize, state: State) {
        debug_assert!(matches!(state, State::Sleeping { .. } | State::Reading | State::Waiting | State::Disk));
        debug_assert_eq!(self.procs[slot].state, State::Running);
        self.procs[slot].state = state;
        self.procs[slot].acct.voluntary += 1;
    }

    /// The running process in `slot` ends. Its parent, if still alive, gets its pid for `wait` (and is
    /// made ready, with `woken` called with its slot, if it was waiting). Its own children
    /// need nothing: their parent pid is now nobody's. A process the kernel started costs no
    /// search.
    pub fn end(&mut self, slot: usize, end: End, mut woken: impl FnMut(usize)) {
        let p = &mut self.procs[slot];
        p.state = State::Zombie;
        p.end = Some(end);
        let (pid, parent) = (p.pid, p.parent);
        if parent == 0 {
            return;
        }
        if let Some(s) = self.procs.iter().position(|q| q.pid == parent && q.is_live()) {
            self.procs[s].ended.push(pid);
            if self.procs[s].state == State::Waiting {
                self.make_ready(s);
                woken(s);
            }
        }
    }

    /// `wait` for the process in `slot`: the first of its children that ended and has not been
    /// reported, or whether it has children left to block for.
    pub fn wait_for(&mut self, slot: usize) -> Wait {
        if let Some(pid) = self.procs[slot].ended.pop() {
            return Wait::Ended(pid);
        }
        let pid = self.procs[slot].pid;
        if self.procs.iter().any(|q| q.is_live() && q.parent == pid) {
            Wait::Block
        } else {
            Wait::NoChild
        }
    }

    /// Frees a zombie's slot.
    pub fn reap(&mut self, slot: usize) {
        debug_assert_eq!(self.procs[slot].state, State::Zombie);
        self.procs[slot].state = State::Free;
    }

    /// Wakes sleepers whose time has come, calling `woken` with each one's slot; returns the
    /// earliest deadline still pending.
    pub fn wake_sleepers(&mut self, now: u64, mut woken: impl FnMut(usize)) -> Option<u64> {
        let mut next: Option<u64> = None;
        for slot in 0..MAX_PROCS {
            if let State::Sleeping { until } = self.procs[slot].state {
                if until <= now {
                    self.make_ready(slot);
                    woken(slot);
                } else {
                    next = Some(next.map_or(until, |n| n.min(until)));
                }
            }
        }
        next
    }

    /// Wakes every process blocked in `read`, calling `woken` with each one's slot.
    pub fn wake_readers(&mut self, mut woken: impl FnMut(usize)) {
        for slot in 0..MAX_PROCS {
            if self.procs[slot].state == State::Reading {
                self.make_ready(slot);
                woken(slot);
            }
        }
    }

    /// Makes every process blocked on a disk ready (each checks again whether what it waits
    /// for happened), calling `woken` with each slot.
    pub fn wake_disk_waiters(&mut self, mut woken: impl FnMut(usize)) {
        for slot in 0..MAX_PROCS {
            if self.procs[slot].state == State::Disk {
                self.make_ready(slot);
                woken(slot);
            }
        }
    }

    /// Whether any process has not yet ended (ready, running or blocked). Stops at the first:
    /// asked at every process's end.
    pub fn any_live(&self) -> bool {
        self.procs.iter().any(Proc::is_live)
    }

    /// Whether every slot holds a process not yet ended (no room to start another). Stops at
    /// the first that does not: asked before every start.
    pub fn all_live(&self) -> bool {
        self.procs.iter().all(Proc::is_live)
    }

    /// Whether any live process is blocked reading input.
    pub fn any_reading(&self) -> bool {
        self.procs.iter().any(|p| p.state == State::Reading)
    }
}
