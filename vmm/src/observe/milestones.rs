//! Boot milestones seen from the host. With `lde.milestones=1` on its command line the kernel
//! writes one byte to `MILESTONE_PORT` right after its banner and just before it first enters
//! ring 3; [`Milestones`], a VM-exit hook, notes at each of those writes and at the shutdown-port
//! write that ends the run: KVM's count of emulated instructions (`insn_emulation`, where KVM
//! offers it), the VM exits to lde so far and the wall time since the run started. A run
//! without the hook pays nothing for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use lde_abi::ports::{MILESTONE_BANNER, MILESTONE_FIRST_USER, MILESTONE_PORT, SHUTDOWN_PORT};

use super::kvm_stats::KvmStats;
use crate::vcpu::VmExitHook;

/// KVM's statistic that counts emulated guest instructions (on PVM: every ring-0 instruction).
pub const INSN_EMULATION: &str = "insn_emulation";

/// A moment of the boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Milestone {
    /// The kernel has written its banner line.
    Banner,
    /// The scheduler is about to enter ring 3 for the first time.
    FirstUser,
    /// The kernel wrote its exit code to the shutdown port.
    Shutdown,
}

impl Milestone {
    pub const ALL: [Milestone; 3] = [Milestone::Banner, Milestone::FirstUser, Milestone::Shutdown];

    /// Its name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Milestone::Banner => "banner",
            Milestone::FirstUser => "first-user",
            Milestone::Shutdown => "shutdown",
        }
    }
}

/// What was seen at one milestone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub milestone: Milestone,
    /// KVM's `insn_emulation` at that exit; `None` where KVM does not offer it.
    pub insns: Option<u64>,
    /// VM exits to lde up to and including this one, the milestone port's writes left out.
    pub exits: u64,
    /// Since the run's start (`RunConfig::started`).
    pub wall: Duration,
}

#[derive(Default)]
struct Seen {
    stats: Option<Arc<KvmStats>>,
    exits: u64,
    milestone_writes: u64,
    /// Milestone-port writes whose value names no milestone (ignored).
    odd_writes: u64,
    marks: Vec<Mark>,
}

/// The exit hook that notes the milestones of one run.
#[derive(Clone)]
pub struct Milestones {
    started: Instant,
    seen: Arc<Mutex<Seen>>,
}

impl Milestones {
    /// For a run that started at `started`.
    pub fn new(started: Instant) -> Milestones {
        Milestones { started, seen: Arc::default() }
    }

    /// The milestones seen so far, in the order they came.
    pub fn marks(&self) -> Vec<Mark> {
        self.seen.lock().expect("milestones lock poisoned").marks.clone()
    }

    /// Writes to the milestone port whose value named no milestone.
    pub fn odd_writes(&self) -> u64 {
        self.seen.lock().expect("milestones lock poisoned").odd_writes
    }

    /// The milestone an exit is, if any; counts the port's writes.
    fn classify(seen: &mut Seen, exit: &VcpuExit<'_>) -> Option<Milestone> {
        match exit {
            VcpuExit::IoOut(MILESTONE_PORT, data) => {
                seen.milestone_writes += 1;
                let milestone = match data {
                    [MILESTONE_BANNER] => Some(Milestone::Banner),
                    [MILESTONE_FIRST_USER] => Some(Milestone::FirstUser),
                    _ => None,
                };
                // A milestone is noted once: a repeated write is as odd as an unknown value.
                let fresh = milestone.filter(|m| !seen.marks.iter().any(|k| k.milestone == *m));
                if fresh.is_none() {
                    seen.odd_writes += 1;
                }
                fresh
            }
            VcpuExit::IoOut(SHUTDOWN_PORT, _) => Some(Milestone::Shutdown),
            _ => None,
        }
    }
}

impl VmExitHook for Milestones {
    fn after_exit(&mut self, exit: &VcpuExit<'_>, _cycles: u64) {
        let wall = self.started.elapsed();
        let mut seen = self.seen.lock().expect("milestones lock poisoned");
        seen.exits += 1;
        if let Some(milestone) = Self::classify(&mut seen, exit) {
            let insns = seen.stats.as_ref().and_then(|s| s.value(INSN_EMULATION));
            let exits = seen.exits - seen.milestone_writes;
            seen.marks.push(Mark { milestone, insns, exits, wall });
        }
    }

    fn attach_kvm_stats(&mut self, stats: Arc<KvmStats>) {
        self.seen.lock().expect("milestones lock poisoned").stats = Some(stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_each_milestone_once_and_counts_the_odd_writes() {
        let mut hook = Milestones::new(Instant::now());
        let code = 0u32.to_le_bytes();
        let serial = [b'x'];
        let exits: [VcpuExit; 8] = [
            VcpuExit::IoOut(0x3f8, &serial),
            VcpuExit::IoOut(MILESTONE_PORT, &[MILESTONE_BANNER]),
            VcpuExit::IoOut(0x3f8, &serial),
            VcpuExit::IoOut(MILESTONE_PORT, &[0x77]),
            VcpuExit::IoOut(MILESTONE_PORT, &[MILESTONE_FIRST_USER]),
            VcpuExit::IoOut(MILESTONE_PORT, &[MILESTONE_BANNER]),
            VcpuExit::IoOut(MILESTONE_PORT, &[1, 0, 0, 0]),
            VcpuExit::IoOut(SHUTDOWN_PORT, &code),
        ];
        for exit in &exits {
            hook.after_exit(exit, 0);
        }
        let marks = hook.marks();
        let seen: Vec<(Milestone, u64, Option<u64>)> = marks.iter().map(|m| (m.milestone, m.exits, m.insns)).collect();
        // Exits to lde, the milestone port's own writes left out; no statistics attached.
        assert_eq!(
            seen,
            [(Milestone::Banner, 1, None), (Milestone::FirstUser, 2, None), (Milestone::Shutdown, 3, None)]
        );
        assert!(marks.windows(2).all(|w| w[0].wall <= w[1].wall));
        assert_eq!(hook.odd_writes(), 3);
    }
}
