//! One process's bookkeeping: its life-cycle state, how it ended, what it cost and did, and the
//! children it has not yet waited for. The table that holds them is [`super::Table`].

use lde_abi::syscall::COUNT as SYSCALL_COUNT;

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
}

impl Proc {
    pub(super) const FREE: Proc = Proc {
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
    pub(super) fn is_live(&self) -> bool {
        !matches!(self.state, State::Free | State::Zombie)
    }
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
