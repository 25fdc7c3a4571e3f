//! The process table and the round-robin run queue. Hardware context (page tables, kernel
//! stacks, saved registers) stays in the kernel; this is the bookkeeping, testable on the host.
//!
//! Every operation is O(1) or O(processes).

use lde_abi::syscall::COUNT as SYSCALL_COUNT;

use crate::children::Ended;

/// Most processes alive at once.
pub const MAX_PROCS: usize = 16;
/// Longest process name kept (longer names are cut).
pub const NAME_MAX: usize = 16;

/// Life cycle: Free → Ready ⇄ Running → Zombie → Free; Running → Sleeping/Reading/Waiting →
/// Ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Free,
    Ready,
    Running,
    /// Blocked in `sleep_ms` until the TSC reaches `until`.
    Sleeping {
        until: u64,
    },
    /// Blocked in `read` on fd 0 until input arrives.
    Reading,
    /// Ended; waiting for the kernel to free its memory and report it.
    Zombie,
    /// Blocked in `wait` until one of its children ends. (Last: the variants are in the order
    /// of the stats page's state codes, so that converting one is no work on every switch.)
    Waiting,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Exited(u8),
    Killed { vector: u8, rip: u64 },
}

impl End {
    pub fn failed(&self) -> bool {
        *self != End::Exited(0)
    }
}

/// What a process cost and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Timer ticks that found it running.
    pub ticks: u64,
    /// Times it was switched in.
    pub scheduled: u64,
    /// Switches away because it yielded, slept or blocked (not counting its end).
    pub voluntary: u64,
    /// Switches away because its time slice ran out.
    pub involuntary: u64,
    /// System calls by number.
    pub syscalls: [u64; SYSCALL_COUNT as usize],
    /// Exceptions it raised (recovered system-call doors excluded).
    pub faults: u64,
    /// TSC cycles spent in ring 3 (between returns to and traps from user mode).
    pub user_cycles: u64,
    /// Exceptions fixed up (see the `fixup` system call) instead of killing the process.
    pub fixups: u64,
}

/// One process's bookkeeping.
#[derive(Clone, Copy, Debug)]
pub struct Proc {
    pub pid: u32,
    name: [u8; NAME_MAX],
    name_len: usize,
    pub state: State,
    pub end: Option<End>,
    pub acct: Accounting,
    /// The pid of the process that spawned it (0: the kernel). Pids are never reused: once that
    /// process has ended no process has its pid, and nobody waits for this one.
    pub parent: u32,
    /// Its children that ended and that it has not waited for.
    ended: Ended,
}

impl Proc {
    const FREE: Proc = Proc {
        pid: 0,
        name: [0; NAME_MAX],
        name_len: 0,
        state: State::Free,
        end: None,
        acct: ZERO_ACCT,
        parent: 0,
        ended: Ended::EMPTY,
    };

    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    /// Whether it is ready, running or blocked (not free, not ended).
    fn is_live(&self) -> bool {
        !matches!(self.state, State::Free | State::Zombie)
    }
}

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

const ZERO_ACCT: Accounting = Accounting {
    ticks: 0,
    scheduled: 0,
    voluntary: 0,
    involuntary: 0,
    syscalls: [0; SYSCALL_COUNT as usize],
    faults: 0,
    user_cycles: 0,
    fixups: 0,
};

/// All processes and the run queue.
pub struct Table {
    procs: [Proc; MAX_PROCS],
    queue: [usize; MAX_PROCS],
    head: usize,
    queued: usize,
    next_pid: u32,
    current: Option<usize>,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub const fn new() -> Table {
        Table { procs: [Proc::FREE; MAX_PROCS], queue: [0; MAX_PROCS], head: 0, queued: 0, next_pid: 1, current: None }
    }

    pub fn get(&self, slot: usize) -> &Proc {
        &self.procs[slot]
    }

    pub fn get_mut(&mut self, slot: usize) -> &mut Proc {
        &mut self.procs[slot]
    }

    /// The running process's slot.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Takes a free slot for a new process spawned by `parent` (a pid; 0 = the kernel), not yet
    /// runnable: call [`Table::make_ready`].
    pub fn alloc(&mut self, name: &str, parent: u32) -> Option<usize> {
        let slot = self.procs.iter().position(|p| p.state == State::Free)?;
        let len = name.len().min(NAME_MAX);
        let mut p = Proc::FREE;
        // Cut on a character boundary.
        let len = (0..=len).rev().find(|&l| name.is_char_boundary(l)).unwrap_or(0);
        p.name[..len].copy_from_slice(&name.as_bytes()[..len]);
        p.name_len = len;
        p.pid = self.next_pid;
        p.parent = parent;
        p.state = State::Zombie; // not runnable until make_ready
        self.next_pid += 1;
        self.procs[slot] = p;
        Some(slot)
    }

    /// Puts a process at the tail of the run queue.
    pub fn make_ready(&mut self, slot: usize) {
        debug_assert!(self.queued < MAX_PROCS);
        self.procs[slot].state = State::Ready;
        self.queue[(self.head + self.queued) % MAX_PROCS] = slot;
        self.queued += 1;
    }

    /// Takes the process at the head of the run queue and makes it the running one.
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
        self.current = Some(slot);
        Some(slot)
    }

    /// Number of processes waiting in the run queue.
    pub fn ready_count(&self) -> usize {
        self.queued
    }

    /// The running process gives up the CPU but stays runnable (`voluntary`: it asked).
    pub fn preempt_current(&mut self, voluntary: bool) {
        if let Some(slot) = self.current.take() {
            let acct = &mut self.procs[slot].acct;
            if voluntary {
                acct.voluntary += 1;
            } else {
                acct.involuntary += 1;
            }
            self.make_ready(slot);
        }
    }

    /// The running process blocks (sleeping, reading or waiting).
    pub fn block_current(&mut self, state: State) {
        debug_assert!(matches!(state, State::Sleeping { .. } | State::Reading | State::Waiting));
        if let Some(slot) = self.current.take() {
            self.procs[slot].state = state;
            self.procs[slot].acct.voluntary += 1;
        }
    }

    /// The running process ends. Its parent, if still alive, gets its pid for `wait` (and is
    /// made ready, with `woken` called with its slot, if it was waiting). Its own children
    /// need nothing: their parent pid is now nobody's. A process the kernel started costs no
    /// search.
    pub fn end_current(&mut self, end: End, mut woken: impl FnMut(usize)) -> Option<usize> {
        let slot = self.current.take()?;
        let p = &mut self.procs[slot];
        p.state = State::Zombie;
        p.end = Some(end);
        let (pid, parent) = (p.pid, p.parent);
        if parent == 0 {
            return Some(slot);
        }
        if let Some(s) = self.procs.iter().position(|q| q.pid == parent && q.is_live()) {
            self.procs[s].ended.push(pid);
            if self.procs[s].state == State::Waiting {
                self.make_ready(s);
                woken(s);
            }
        }
        Some(slot)
    }

    /// `wait` for the running process: the first of its children that ended and has not been
    /// reported, or whether it has children left to block for.
    pub fn wait_current(&mut self) -> Wait {
        let Some(slot) = self.current else { return Wait::NoChild };
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

    /// Processes not yet ended (ready, running or blocked).
    pub fn live_count(&self) -> usize {
        self.procs.iter().filter(|p| p.is_live()).count()
    }

    /// Whether any live process is blocked reading input.
    pub fn any_reading(&self) -> bool {
        self.procs.iter().any(|p| p.state == State::Reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny fixed-capacity list for recording woken slots without `alloc`.
    struct Woken {
        items: [usize; MAX_PROCS],
        len: usize,
    }

    impl Woken {
        fn push(&mut self, s: usize) {
            self.items[self.len] = s;
            self.len += 1;
        }

        fn as_slice(&self) -> &[usize] {
            &self.items[..self.len]
        }
    }

    #[test]
    fn round_robin_in_spawn_order() {
        let mut t = Table::new();
        let a = t.alloc("a", 0).unwrap();
        let b = t.alloc("b", 0).unwrap();
        t.make_ready(a);
        t.make_ready(b);
        assert_eq!((t.get(a).pid, t.get(b).pid), (1, 2));
        assert_eq!(t.pick_next(), Some(a));
        t.preempt_current(false);
        assert_eq!(t.pick_next(), Some(b));
        t.preempt_current(true);
        assert_eq!(t.pick_next(), Some(a));
        assert_eq!(t.get(a).acct.involuntary, 1);
        assert_eq!(t.get(b).acct.voluntary, 1);
        assert_eq!(t.get(a).acct.scheduled, 2);
    }

    #[test]
    fn exit_reap_and_slot_reuse() {
        let mut t = Table::new();
        let a = t.alloc("first", 0).unwrap();
        t.make_ready(a);
        assert_eq!(t.pick_next(), Some(a));
        assert_eq!(t.end_current(End::Killed { vector: 13, rip: 0x10 }, |_| panic!("no parent")), Some(a));
        assert_eq!(t.live_count(), 0);
        assert!(t.get(a).end.unwrap().failed());
        t.reap(a);
        let b = t.alloc("second", 0).unwrap();
        assert_eq!(b, a, "the slot is reused");
        assert_eq!(t.get(b).pid, 2, "pids are not");
        assert_eq!(t.get(b).end, None);
    }

    #[test]
    fn table_fills_up() {
        let mut t = Table::new();
        for i in 0..MAX_PROCS {
            let s = t.alloc("p", 0).unwrap();
            t.make_ready(s);
            assert_eq!(s, i);
        }
        assert_eq!(t.alloc("one too many", 0), None);
        assert_eq!(t.ready_count(), MAX_PROCS);
    }

    #[test]
    fn sleepers_wake_at_their_deadline() {
        let mut t = Table::new();
        let a = t.alloc("a", 0).unwrap();
        let b = t.alloc("b", 0).unwrap();
        t.make_ready(a);
        t.make_ready(b);
        t.pick_next();
        t.block_current(State::Sleeping { until: 100 });
        t.pick_next();
        t.block_current(State::Sleeping { until: 50 });
        assert_eq!(t.pick_next(), None);
        let mut woken = Woken { items: [0; MAX_PROCS], len: 0 };
        assert_eq!(t.wake_sleepers(10, |s| woken.push(s)), Some(50));
        assert_eq!(t.wake_sleepers(60, |s| woken.push(s)), Some(100));
        assert_eq!(t.pick_next(), Some(b));
        assert_eq!(t.wake_sleepers(100, |s| woken.push(s)), None);
        assert_eq!(woken.as_slice(), &[b, a]);
        assert_eq!(t.pick_next(), Some(a));
        assert_eq!(t.live_count(), 2);
    }

    #[test]
    fn readers_block_and_wake_together() {
        let mut t = Table::new();
        let a = t.alloc("cat", 0).unwrap();
        t.make_ready(a);
        t.pick_next();
        t.block_current(State::Reading);
        assert!(t.any_reading());
        let mut n = 0;
        t.wake_readers(|s| {
            assert_eq!(s, a);
            n += 1
        });
        assert_eq!(n, 1);
        assert!(!t.any_reading());
        assert_eq!(t.pick_next(), Some(a));
    }

    #[test]
    fn wait_reports_children_in_the_order_they_ended_then_no_child() {
        let mut t = Table::new();
        let parent = t.alloc("parent", 0).unwrap();
        t.make_ready(parent);
        assert_eq!(t.pick_next(), Some(parent));
        assert_eq!(t.wait_current(), Wait::NoChild, "no child yet");
        let ppid = t.get(parent).pid;
        let a = t.alloc("a", ppid).unwrap();
        t.make_ready(a);
        let b = t.alloc("b", ppid).unwrap();
        t.make_ready(b);
        let (apid, bpid) = (t.get(a).pid, t.get(b).pid);
        assert_eq!(t.wait_current(), Wait::Block, "both alive");
        t.block_current(State::Waiting);
        assert_eq!(t.pick_next(), Some(a));
        t.preempt_current(false);
        // b ends first and wakes the parent; a ends before the parent runs: no second wake-up.
        assert_eq!(t.pick_next(), Some(b));
        let mut woken = Woken { items: [0; MAX_PROCS], len: 0 };
        assert_eq!(t.end_current(End::Exited(0), |s| woken.push(s)), Some(b));
        t.reap(b);
        assert_eq!(t.pick_next(), Some(a));
        assert_eq!(t.end_current(End::Killed { vector: 6, rip: 0x1000 }, |s| woken.push(s)), Some(a));
        t.reap(a);
        assert_eq!(woken.as_slice(), &[parent]);
        assert_eq!(t.pick_next(), Some(parent));
        assert_eq!(t.pick_next(), None, "the parent was queued once");
        assert_eq!(t.wait_current(), Wait::Ended(bpid));
        assert_eq!(t.wait_current(), Wait::Ended(apid));
        assert_eq!(t.wait_current(), Wait::NoChild);
    }

    #[test]
    fn orphans_wake_nobody_and_a_reused_slot_has_no_children() {
        let mut t = Table::new();
        let parent = t.alloc("parent", 0).unwrap();
        t.make_ready(parent);
        t.pick_next();
        let child = t.alloc("child", t.get(parent).pid).unwrap();
        t.make_ready(child);
        // Another process waits for a child of its own, which is still alive.
        let other = t.alloc("other", 0).unwrap();
        t.make_ready(other);
        let own = t.alloc("own", t.get(other).pid).unwrap();
        let own_pid = t.get(own).pid;
        t.end_current(End::Exited(0), |_| panic!("the kernel does not wait"));
        t.reap(parent);
        assert_eq!(t.pick_next(), Some(child));
        t.preempt_current(false);
        assert_eq!(t.pick_next(), Some(other));
        t.make_ready(own);
        assert_eq!(t.wait_current(), Wait::Block);
        t.block_current(State::Waiting);
        // The parent's slot goes to a new process: the orphan's end reaches neither it nor the
        // unrelated waiter.
        let reused = t.alloc("reused", 0).unwrap();
        assert_eq!(reused, parent);
        t.make_ready(reused);
        assert_eq!(t.pick_next(), Some(child));
        t.end_current(End::Exited(0), |_| panic!("nobody waits for an orphan"));
        t.reap(child);
        assert_eq!(t.pick_next(), Some(own));
        assert_eq!(t.end_current(End::Exited(0), |_| {}), Some(own));
        t.reap(own);
        assert_eq!(t.pick_next(), Some(reused));
        assert_eq!(t.wait_current(), Wait::NoChild, "the orphan was not its child");
        t.preempt_current(true);
        assert_eq!(t.pick_next(), Some(other), "woken by its own child");
        assert_eq!(t.wait_current(), Wait::Ended(own_pid));
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let mut t = Table::new();
        let s = t.alloc("abcdefghijklmnoé-long", 0).unwrap();
        assert_eq!(t.get(s).name(), "abcdefghijklmno");
    }
}
