//! How a run ended ([`Outcome`]), everything lde learned from it ([`RunReport`]), and the
//! diagnosis of a timeout: who held the CPU.

use std::time::Duration;

use lde_abi::exit_code as code;
use lde_abi::stats::StatsPage;

use crate::host::HostInfo;
use crate::observe::recorder::Recorder;
use crate::observe::report;
use crate::vmexit::{Crash, VmExitTotals};

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest shut down through the shutdown port with this code.
    Shutdown(u32),
    /// The guest crashed.
    Crashed { crash: Crash, registers: String },
    /// `--timeout` expired; `held_by` says who had the CPU.
    Timeout { after: Duration, held_by: String },
    /// A signal that stops lde arrived (SIGINT, SIGTERM, SIGHUP, SIGQUIT, …).
    Interrupted(i32),
    /// The reader of lde's stdout or stderr went away.
    OutputClosed,
    /// GDB's `kill` command stopped the guest.
    GdbKilled,
}

impl Outcome {
    /// The exit status of the lde process for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Shutdown(c) => *c as u8,
            Outcome::Crashed { .. } => code::GUEST_CRASHED,
            Outcome::Timeout { .. } => code::TIMEOUT,
            Outcome::Interrupted(_) => code::INTERRUPTED,
            Outcome::OutputClosed => code::OUTPUT_CLOSED,
            Outcome::GdbKilled => code::GDB_KILLED,
        }
    }
}

/// Everything lde learned from one run.
pub struct RunReport {
    pub outcome: Outcome,
    pub host: HostInfo,
    pub tsc_khz: Option<u32>,
    /// From process start to the kernel's banner line.
    pub banner_after: Option<Duration>,
    /// From process start to the end of the run.
    pub ended_after: Duration,
    pub exits: VmExitTotals,
    /// KVM's statistics of the vCPU at the end, where the host offers them.
    pub kvm_stats: Option<std::collections::BTreeMap<String, u64>>,
    pub serial_bytes: u64,
    /// What was read from the kernel's stats page, if it could be read.
    pub recorder: Option<Recorder>,
    /// What each `--disk` device served, disk 0 first.
    pub disks: Vec<crate::devices::virtio::DiskCounts>,
    /// The vCPUs of `--cpus` the guest never started (by id).
    pub never_started: Vec<u8>,
}

impl RunReport {
    /// The kernel's counters at the end of the run.
    pub fn stats(&self) -> Option<&StatsPage> {
        self.recorder.as_ref().and_then(|r| r.last.as_deref())
    }

    /// The machine-readable report of this run (`lde run --report`).
    pub fn report(&self) -> report::Report {
        let run = self;
        let (kind, detail) = match &run.outcome {
            Outcome::Shutdown(code) => ("exited", format!("the guest shut down with code {code}")),
            Outcome::Crashed { crash, .. } => ("crashed", crash.to_string()),
            Outcome::Timeout { after, held_by } => {
                ("timeout", format!("still running after {} s: {held_by}", after.as_secs_f64()))
            }
            Outcome::Interrupted(signal) => ("interrupted", format!("stopped by {}", super::signals::name(*signal))),
            Outcome::OutputClosed => ("output-closed", "the reader of lde's output went away".to_string()),
            Outcome::GdbKilled => ("gdb-killed", "GDB's kill command stopped the guest".to_string()),
        };
        report::Report {
            schema: report::SCHEMA,
            lde_version: env!("CARGO_PKG_VERSION"),
            host: report::host(&run.host, run.tsc_khz),
            outcome: Some(report::Outcome { kind, exit_code: run.outcome.exit_code(), detail }),
            timing: report::Timing {
                banner_ms: run.banner_after.map(|d| d.as_secs_f64() * 1e3),
                elapsed_ms: run.ended_after.as_secs_f64() * 1e3,
            },
            vm_exits: report::VmExits {
                handled_by_lde: run.exits,
                total: run.exits.total(),
                kvm: run.kvm_stats.clone(),
            },
            guest: run.recorder.as_ref().and_then(report::guest),
            disks: run.disks.clone(),
        }
    }
}

/// Says which process had the CPU when the run was stopped, and whether a timer could have
/// taken it back.
pub(super) fn who_held_the_cpu(vcpu: &kvm_ioctls::VcpuFd, stats: Option<&StatsPage>) -> String {
    let place = match vcpu.get_regs().and_then(|r| vcpu.get_sregs().map(|s| (r, s))) {
        Ok((regs, sregs)) => format!("in ring {} at rip {:#x}", sregs.cs.selector & 3, regs.rip),
        Err(_) => "at an unknown place".to_string(),
    };
    let Some(page) = stats else {
        return format!("the vCPU was {place} (the kernel's counters are unavailable)");
    };
    // The vCPU that did not come back is processor 0's (the one lde watches).
    let pid = page.cpus[0].current_pid;
    let holder = match page.procs.iter().find(|p| pid != 0 && p.pid == pid) {
        Some(p) => format!("pid {} ({})", p.pid, p.name()),
        None => "the kernel (no process was running)".to_string(),
    };
    let timer = if page.timer_hz == 0 {
        "no timer interrupt was armed (--timer-hz 0), so the kernel could not take the CPU back".to_string()
    } else {
        format!("the timer ran at {} Hz", page.timer_hz)
    };
    format!("the CPU was held by {holder} {place}; {timer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_documented_codes() {
        assert_eq!(Outcome::Shutdown(3).exit_code(), 3);
        let timeout = Outcome::Timeout { after: Duration::from_secs(1), held_by: String::new() };
        assert_eq!(timeout.exit_code(), 124);
        assert_eq!(Outcome::Interrupted(libc::SIGINT).exit_code(), 130);
        assert_eq!(Outcome::OutputClosed.exit_code(), 141);
        assert_eq!(Outcome::GdbKilled.exit_code(), 137);
        let crash = Outcome::Crashed { crash: Crash::TripleFault, registers: String::new() };
        assert_eq!(crash.exit_code(), 70);
    }
}
