//! Counting the kernel's work in instructions: KVM's `insn_emulation` statistic counts every
//! guest instruction KVM emulates, which on PVM is every ring-0 instruction, so it measures
//! kernel work without noise. Two kinds of rows:
//!
//! - per operation: the same program booted with N and with 2N operations; the difference in
//!   the emulated instructions from the first entry to ring 3 to shutdown (the kernel's
//!   milestones) divided by the difference in operations (counted by the kernel's stats page):
//!   program start and end cancel out, and the boot, where kernel work that waits on the clock
//!   (a timer calibration) would make the count vary, is left out;
//! - boot: the empty kernel (`--none`) and `hello`, booted several times in turn with the
//!   kernel's milestones on: emulated instructions, VM exits to lde and wall time at the
//!   banner, at the first entry to ring 3 and at shutdown.
//!
//! On hardware KVM ring 0 runs natively and `insn_emulation` counts only what KVM had to
//! emulate: the rows say n/a there rather than print a meaningless number.

use std::time::Duration;

use lde_abi::cmdline::MILESTONES_KEY;
use lde_abi::stats::StatsPage;

use super::measure::Boot;
use super::output::{BootMilestone, BootRow, PerOpInsns};
use super::{BenchConfig, Error};
use crate::host::KvmKind;
use crate::initrd::Programs;
use crate::observe::milestones::{Mark, Milestone, Milestones, INSN_EMULATION};

/// How one row's instructions per operation are counted.
pub struct PerOpMethod {
    /// The row of `lde bench` it belongs to.
    pub name: &'static str,
    /// The program that makes `n` operations.
    program: fn(u64) -> String,
    /// The smaller and the larger `n`.
    n: (u64, u64),
    /// Timer rate of both runs (0: no timer, so that no tick lands in the counts).
    hz: u32,
    /// The operations the kernel counted in a run.
    ops: fn(&StatsPage) -> u64,
    /// What `ops` counts.
    unit: &'static str,
}

/// A null-call row: `program` makes n null calls through one door, timer off.
const fn null_calls(name: &'static str, program: fn(u64) -> String) -> PerOpMethod {
    PerOpMethod {
        name,
        program,
        n: (1000, 2000),
        hz: 0,
        ops: |p| p.calls[lde_abi::syscall::NULL as usize],
        unit: "null calls",
    }
}

/// The rows with an instruction count per operation.
pub const PER_OP: [PerOpMethod; 4] = [
    null_calls("syscall-null", |n| format!("calls {n} syscall null")),
    null_calls("int80-null", |n| format!("calls {n} int80 null")),
    PerOpMethod {
        name: "timer-tick",
        program: |ms| format!("spin {ms}"),
        n: (100, 300),
        hz: super::TICK_TIMER_HZ,
        ops: |p| p.ticks,
        unit: "ticks",
    },
    PerOpMethod {
        name: "switch-cr3",
        program: |n| format!("pingpong {n}"),
        n: (200, 400),
        hz: 0,
        ops: |p| p.switches,
        unit: "context switches (yields that switched)",
    },
];

/// The boot rows: name, what they run (`None`: nothing, as `lde run --none`), description.
pub const BOOT_ROWS: [(&str, Option<&str>, &str); 3] = [
    (
        super::floor::NAME,
        None,
        "the floor, no lde: the same crates' VM of lde's memory size and irqchip, 3 instructions to the shutdown port",
    ),
    ("boot-empty", None, "the kernel with nothing to run (lde run --none): boot to shutdown"),
    ("boot-hello", Some("hello"), "the hello program: boot, first entry to ring 3, whole run"),
];

/// Whether KVM's `insn_emulation` counts the kernel's instructions on this host, and if not, why.
pub fn counted(kvm: KvmKind) -> Result<(), &'static str> {
    match kvm {
        KvmKind::Pvm => Ok(()),
        _ => Err("ring 0 runs natively on this host: KVM's insn_emulation counts only what KVM had to emulate"),
    }
}

/// Boots `programs` at `hz` with the kernel's milestones on; returns the run's milestones.
fn boot_with_milestones(
    programs: Programs,
    hz: u32,
    config: &BenchConfig,
) -> Result<(crate::RunReport, Vec<Mark>), Error> {
    let extra = format!("{MILESTONES_KEY}=1");
    let boot = Boot::quiet(programs, hz);
    let hook = Milestones::new(boot.started);
    let (run, _) = Boot { extra: &extra, hook: Some(Box::new(hook.clone())), ..boot }.run(config)?;
    if hook.odd_writes() > 0 {
        log::warn!("{} write(s) to the milestone port named no milestone", hook.odd_writes());
    }
    Ok((run, hook.marks()))
}

/// Emulated instructions from the first entry to ring 3 to shutdown.
fn user_to_shutdown(marks: &[Mark]) -> Result<u64, Error> {
    let at = |m: Milestone| marks.iter().find(|k| k.milestone == m).and_then(|k| k.insns);
    match (at(Milestone::FirstUser), at(Milestone::Shutdown)) {
        (Some(start), Some(end)) => Ok(end.saturating_sub(start)),
        _ => Err(Error::Guest(format!("no {INSN_EMULATION} at the first entry to ring 3 and at shutdown"))),
    }
}

/// Emulated instructions per operation for `method`: two boots, N and 2N operations.
pub fn per_op(method: &PerOpMethod, config: &BenchConfig) -> Result<PerOpInsns, Error> {
    let mut counts = Vec::new();
    for n in [method.n.0, method.n.1] {
        let programs = crate::initrd::prepare(&[(method.program)(n)], Vec::new())?;
        let (run, marks) = boot_with_milestones(programs, method.hz, config)?;
        let ops =
            run.stats().map(method.ops).ok_or_else(|| Error::Guest("the kernel's counters are unreadable".into()))?;
        counts.push((user_to_shutdown(&marks)?, ops));
    }
    let (insns, ops) = (counts[1].0 as f64 - counts[0].0 as f64, counts[1].1.saturating_sub(counts[0].1));
    if ops == 0 {
        return Err(Error::Guest(format!("{}: no more {} in the longer run", method.name, method.unit)));
    }
    let timer = match method.hz {
        0 => "timer off".to_string(),
        hz => format!("timer at {hz} Hz"),
    };
    Ok(PerOpInsns {
        name: method.name.to_string(),
        insns_per_op: Some(insns / ops as f64),
        ops,
        method: format!(
            "'{}' minus '{}', {timer}: emulated instructions from ring 3 to shutdown / {}",
            (method.program)(method.n.1),
            (method.program)(method.n.0),
            method.unit
        ),
    })
}

/// A row of n/a: the host does not count the kernel's instructions.
pub fn per_op_not_counted(method: &PerOpMethod, why: &str) -> PerOpInsns {
    PerOpInsns { name: method.name.to_string(), insns_per_op: None, ops: 0, method: why.to_string() }
}

/// Boots each of `rows` `boots` times, in turn (one of each, then again), timer off, with the
/// kernel's milestones on; `progress` is told each boot as it starts.
pub fn boot_rows(
    rows: &[&'static str],
    boots: u32,
    config: &BenchConfig,
    mut progress: impl FnMut(&str, u32),
) -> Result<Vec<BootRow>, Error> {
    let selected: Vec<_> = BOOT_ROWS.iter().filter(|r| rows.contains(&r.0)).collect();
    let mut marks: Vec<Vec<Vec<Mark>>> = vec![Vec::new(); selected.len()];
    for round in 0..boots {
        for (i, (name, program, _)) in selected.iter().enumerate() {
            progress(name, round);
            if *name == super::floor::NAME {
                marks[i].push(vec![super::floor::boot(&config.kvm_device)?]);
                continue;
            }
            let programs = match program {
                None => Programs::none(),
                Some(spec) => crate::initrd::prepare(&[spec.to_string()], Vec::new())?,
            };
            marks[i].push(boot_with_milestones(programs, 0, config)?.1);
        }
    }
    let counted = counted(config.host.kvm).is_ok();
    Ok(selected
        .iter()
        .zip(marks)
        .map(|((name, program, _), runs)| BootRow {
            name: name.to_string(),
            run: match program {
                _ if *name == super::floor::NAME => "3 instructions in a bare VM, no lde kernel".to_string(),
                None => "--none".to_string(),
                Some(p) => p.to_string(),
            },
            boots,
            timer_hz: 0,
            milestones: Milestone::ALL.iter().filter_map(|&m| summarize(m, &runs, counted)).collect(),
        })
        .collect())
}

/// One milestone over every boot of a row: medians, and the spread of instruction counts.
/// `None` when no boot reached it (the empty kernel never enters ring 3).
fn summarize(milestone: Milestone, runs: &[Vec<Mark>], counted: bool) -> Option<BootMilestone> {
    let marks: Vec<&Mark> = runs.iter().filter_map(|r| r.iter().find(|m| m.milestone == milestone)).collect();
    if marks.is_empty() {
        return None;
    }
    let mut walls: Vec<Duration> = marks.iter().map(|m| m.wall).collect();
    walls.sort();
    let mut exits: Vec<u64> = marks.iter().map(|m| m.exits).collect();
    exits.sort_unstable();
    let mut insns: Vec<u64> = marks.iter().filter_map(|m| m.insns).filter(|_| counted).collect();
    insns.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Some(BootMilestone {
        name: milestone.name().to_string(),
        reached: marks.len() as u32,
        insns: insns.get((insns.len().max(1) - 1) / 2).copied(),
        insns_min: insns.first().copied(),
        insns_max: insns.last().copied(),
        exits: exits[(exits.len() - 1) / 2],
        wall_ms: ms(walls[(walls.len() - 1) / 2]),
        wall_ms_min: ms(walls[0]),
        wall_ms_max: ms(walls[walls.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(milestone: Milestone, insns: u64, exits: u64, ms: u64) -> Mark {
        Mark { milestone, insns: Some(insns), exits, wall: Duration::from_millis(ms) }
    }

    #[test]
    fn milestones_are_summarized_over_boots() {
        let runs = vec![
            vec![mark(Milestone::Banner, 100, 5, 9), mark(Milestone::Shutdown, 900, 20, 30)],
            vec![mark(Milestone::Banner, 100, 5, 7), mark(Milestone::Shutdown, 904, 21, 40)],
            vec![mark(Milestone::Banner, 100, 5, 8), mark(Milestone::Shutdown, 902, 20, 35)],
        ];
        let banner = summarize(Milestone::Banner, &runs, true).unwrap();
        assert_eq!((banner.insns, banner.insns_min, banner.insns_max), (Some(100), Some(100), Some(100)));
        assert_eq!((banner.wall_ms, banner.wall_ms_min, banner.wall_ms_max, banner.reached), (8.0, 7.0, 9.0, 3));
        let end = summarize(Milestone::Shutdown, &runs, true).unwrap();
        assert_eq!((end.insns, end.insns_min, end.insns_max, end.exits), (Some(902), Some(900), Some(904), 20));
        assert!(summarize(Milestone::FirstUser, &runs, true).is_none());
        // Where the host does not count the kernel's instructions, none are reported.
        let end = summarize(Milestone::Shutdown, &runs, false).unwrap();
        assert_eq!((end.insns, end.insns_min, end.insns_max), (None, None, None));
    }

    #[test]
    fn only_pvm_counts_the_kernels_instructions() {
        assert!(counted(KvmKind::Pvm).is_ok());
        assert!(counted(KvmKind::Hardware(crate::host::Vendor::Vmx)).is_err());
        assert!(counted(KvmKind::Nested(crate::host::Vendor::Svm)).is_err());
        let names: Vec<&str> = PER_OP.iter().map(|m| m.name).collect();
        assert!(names.iter().all(|n| super::super::MEASUREMENTS.iter().any(|m| m.0 == *n)), "{names:?}");
    }
}
