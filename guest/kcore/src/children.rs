//! What a process keeps about its ended children until it waits for them: their pids, oldest
//! first, at most [`WAIT_PENDING_MAX`] (a parent that never waits cannot make it grow).

use lde_abi::syscall::WAIT_PENDING_MAX;

/// Pids of ended children not yet reported by `wait`, in the order they ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pids: [u32; WAIT_PENDING_MAX],
    len: usize,
}

impl Ended {
    pub const EMPTY: Ended = Ended { pids: [0; WAIT_PENDING_MAX], len: 0 };

    /// Records that child `pid` ended. When [`WAIT_PENDING_MAX`] are already kept, the oldest is
    /// forgotten: its parent does not wait, or not often enough to keep up.
    pub fn push(&mut self, pid: u32) {
        if self.len == WAIT_PENDING_MAX {
            self.pids.copy_within(1.., 0);
            self.len -= 1;
        }
        self.pids[self.len] = pid;
        self.len += 1;
    }

    /// Takes the child that ended first.
    pub fn pop(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let pid = self.pids[0];
        self.pids.copy_within(1..self.len, 0);
        self.len -= 1;
        Some(pid)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ended_first_reported() {
        let mut e = Ended::EMPTY;
        assert_eq!(e.pop(), None);
        e.push(7);
        e.push(3);
        assert_eq!(e.pop(), Some(7));
        e.push(9);
        assert_eq!((e.pop(), e.pop(), e.pop()), (Some(3), Some(9), None));
        assert!(e.is_empty());
    }

    #[test]
    fn a_parent_that_never_waits_keeps_only_the_newest() {
        let mut e = Ended::EMPTY;
        for pid in 1..=(WAIT_PENDING_MAX as u32 + 5) {
            e.push(pid);
        }
        assert_eq!(e.len(), WAIT_PENDING_MAX);
        for pid in 6..=(WAIT_PENDING_MAX as u32 + 5) {
            assert_eq!(e.pop(), Some(pid));
        }
        assert_eq!(e.pop(), None);
    }
}
