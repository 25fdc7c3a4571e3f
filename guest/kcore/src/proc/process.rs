//! One process: its life-cycle state, how it ended, what it cost and did, the children it has
//! not yet waited for, and the machine state the kernel keeps for it ([`MachineState`]). The
//! table that holds them is [`super::Table`].

use super::NAME_MAX;
use crate::children::Ended;

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
    /// Blocked in `wait` until one of its children ends.
    Waiting,
    /// Blocked in `disk_read` or `disk_write` until the disk is free or its request is done.
    /// (Last: the variants are in the order of the stats page's state codes, so that
    /// converting one is no work on every switch.)
    Disk,
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
    /// Exceptions it raised (recovered system-call doors excluded).
    pub faults: u64,
    /// TSC cycles spent in ring 3 (between returns to and traps from user mode).
    pub user_cycles: u64,
    /// Exceptions fixed up (see the `fixup` system call) instead of killing the process.
    pub fixups: u64,
    // Its disk counters and its system calls by number are not here: they live in its slot of
    // the kernel's stats page only (written by the kernel's disk.rs and syscall.rs). Here the
    // disk counters made every context switch ~10 emulated instructions longer, and a second
    // count of each call cost every system call 3 (`lde bench --insns`).
}

/// What the kernel keeps for a process that only the hardware gives meaning to (its address
/// space, its registers while it does not run). It lives in the process's slot, beside the
/// bookkeeping here, which never looks inside it.
pub trait MachineState {
    /// The state of a slot that never held a process.
    const FREE: Self;
}

/// No machine state (the unit tests' processes).
impl MachineState for () {
    const FREE: Self = ();
}

/// One process: its bookkeeping and its machine state `M`.
#[derive(Clone, Copy, Debug)]
pub struct Proc<M> {
    pub pid: u32,
    pub(super) name: [u8; NAME_MAX],
    pub(super) name_len: usize,
    pub state: State,
    pub end: Option<End>,
    pub acct: Accounting,
    /// The pid of the process that spawned it (0: the kernel). Pids are never reused: once that
    /// process has ended no process has its pid, and nobody waits for this one.
    pub parent: u32,
    /// Its children that ended and that it has not waited for.
    pub(super) ended: Ended,
    /// Ticks left in its current time slice.
    pub slice_left: u32,
    /// Ticks that found it running in ring 3 (for a good part of a period) since its last system
    /// call: the runaway watchdog's count.
    pub watched_ticks: u64,
    /// An exception at `.0` resumes at `.1` (the `fixup` system call).
    pub fixup: Option<(u64, u64)>,
    /// The kernel's machine state for it: set by the kernel when it starts the process, and left
    /// alone by the table.
    pub machine: M,
}

impl<M: MachineState> Proc<M> {
    pub(super) const FREE: Self = Proc {
        pid: 0,
        name: [0; NAME_MAX],
        name_len: 0,
        state: State::Free,
        end: None,
        acct: ZERO_ACCT,
        parent: 0,
        ended: Ended::EMPTY,
        slice_left: 0,
        watched_ticks: 0,
        fixup: None,
        machine: M::FREE,
    };
}

impl<M> Proc<M> {
    /// Starts the bookkeeping of a new process, `pid` named `name` (cut to [`NAME_MAX`] bytes on
    /// a character boundary) and spawned by `parent`, in this slot: not yet runnable (a zombie
    /// until the table makes it ready). Its machine state is the kernel's to set.
    pub(super) fn start(&mut self, pid: u32, name: &str, parent: u32) {
        // Every field, so that a new one cannot be forgotten here.
        let Proc {
            pid: pid_of,
            name: name_of,
            name_len,
            state,
            end,
            acct,
            parent: parent_of,
            ended,
            slice_left,
            watched_ticks,
            fixup,
            machine: _,
        } = self;
        let len = name.len().min(NAME_MAX);
        let len = (0..=len).rev().find(|&l| name.is_char_boundary(l)).unwrap_or(0);
        *name_of = [0; NAME_MAX];
        name_of[..len].copy_from_slice(&name.as_bytes()[..len]);
        *name_len = len;
        *pid_of = pid;
        *parent_of = parent;
        *state = State::Zombie;
        *end = None;
        *acct = ZERO_ACCT;
        *ended = Ended::EMPTY;
        *slice_left = 0;
        *watched_ticks = 0;
        *fixup = None;
    }

    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    /// The name's bytes (UTF-8: `start` cuts it at a character boundary), for copies and
    /// console lines that need no `str` (checking it again costs ~6 emulated instructions a
    /// byte where ring 0 is emulated).
    pub fn name_bytes(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// Whether it is ready, running or blocked (not free, not ended).
    pub(super) fn is_live(&self) -> bool {
        !matches!(self.state, State::Free | State::Zombie)
    }
}

const ZERO_ACCT: Accounting =
    Accounting { ticks: 0, scheduled: 0, voluntary: 0, involuntary: 0, faults: 0, user_cycles: 0, fixups: 0 };
