//! The instruction-count baseline: the counts of `lde bench --insns` kept in a file per kind of
//! host (`tests/insn-baseline/<kind>.json`), and the check of a run against it. Instruction
//! counts are deterministic where KVM emulates ring 0 (PVM), so the gate can be tight where a
//! wall-time gate could not: a count that grew by more than [`GROWTH_PERCENT`] fails (or by more
//! than twice the spread its boots showed when the baseline was written, where the kernel's
//! work waits on the clock; per-operation rows: or by more than [`PER_OP_SLACK`] instructions,
//! whichever is more), and so does one that fell by more than [`STALE_PERCENT`], because a
//! baseline left far above the counts would let a regression back in unseen.
//!
//! The stale check applies to the counts that are exact (per-operation rows, and milestones
//! whose boots agreed when the baseline was written). The others come from kernel work that
//! waits on the clock, such as a timer calibration spinning on the TSC: on a loaded machine the
//! vCPU gets less time, such loops run fewer rounds and the count falls (12 % of the empty boot,
//! with two CPU hogs on two cores, when the kernel still calibrated its timer that way), so a
//! fall says nothing there. Load never makes such a count grow, so growth is checked everywhere.
//! Write the baseline on an idle machine.

use serde::{Deserialize, Serialize};

use super::output::BenchReport;

/// The value of a baseline file's `schema` field.
pub const SCHEMA: &str = "lde-insn-baseline/1";
/// The growth of a count that still passes, in percent of the baseline.
pub const GROWTH_PERCENT: f64 = 2.0;
/// The growth of a per-operation count that passes however small the count (instructions).
pub const PER_OP_SLACK: f64 = 3.0;
/// A count this far (percent) below the baseline means the baseline is stale.
pub const STALE_PERCENT: f64 = 10.0;

/// One count: `syscall-null` (per operation) or `boot-hello/shutdown` (from power-on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub row: String,
    pub insns: f64,
    pub per_op: bool,
    /// How far apart the boots' counts were (max − min; 0 for per-operation rows).
    #[serde(default)]
    pub spread: f64,
}

/// A baseline file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InsnBaseline {
    pub schema: String,
    /// The kind of KVM it holds for (`pvm`); another kind's counts say nothing about this one's.
    pub host_kind: String,
    /// The host it was written on (for the reader; not checked).
    pub cpu_model: String,
    pub lde_version: String,
    /// The command that rewrote it.
    pub refresh: String,
    pub counts: Vec<Count>,
}

/// The counts of a run: every per-operation row and every milestone of every boot row (medians).
pub fn counts(report: &BenchReport) -> Vec<Count> {
    let per_op = report.insns_per_op.iter().filter_map(|r| {
        let insns = r.insns_per_op.map(|i| (i * 10.0).round() / 10.0)?;
        Some(Count { row: r.name.clone(), insns, per_op: true, spread: 0.0 })
    });
    let boot = report.boot.iter().flat_map(|row| {
        row.milestones.iter().filter_map(move |m| {
            let spread = m.insns_max?.saturating_sub(m.insns_min?) as f64;
            Some(Count { row: format!("{}/{}", row.name, m.name), insns: m.insns? as f64, per_op: false, spread })
        })
    });
    per_op.chain(boot).collect()
}

/// The baseline a run makes.
pub fn from_report(report: &BenchReport, refresh: &str) -> InsnBaseline {
    InsnBaseline {
        schema: SCHEMA.to_string(),
        host_kind: report.host.kvm.clone(),
        cpu_model: report.host.cpu_model.clone(),
        lde_version: report.lde_version.clone(),
        refresh: refresh.to_string(),
        counts: counts(report),
    }
}

/// What became of one count.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Within the margins.
    Held { row: String, baseline: f64, now: f64 },
    /// Grew by more than the margin allows (`allowed`: the largest count that passes).
    Grew { row: String, baseline: f64, now: f64, allowed: f64 },
    /// Fell so far that the baseline no longer guards it.
    Stale { row: String, baseline: f64, now: f64 },
    /// Measured, but not in the baseline.
    New { row: String, now: f64 },
}

impl Verdict {
    pub fn failed(&self) -> bool {
        matches!(self, Verdict::Grew { .. } | Verdict::Stale { .. })
    }

    /// One line, naming the row, the counts and, for a failure, what to do.
    pub fn line(&self, refresh: &str) -> String {
        let pct = |now: f64, then: f64| (now - then) * 100.0 / then.max(1.0);
        match self {
            Verdict::Held { row, baseline, now } => {
                format!("held: {row} {now} emulated instructions, baseline {baseline} ({:+.2}%)", pct(*now, *baseline))
            }
            Verdict::Grew { row, baseline, now, allowed } => format!(
                "REGRESSION: {row} {now} emulated instructions, baseline {baseline} ({:+.2}%, at most {allowed:.1} \
                 passes): make the kernel path shorter, or if the growth is intended, refresh the baseline with \
                 `{refresh}` and commit it",
                pct(*now, *baseline)
            ),
            Verdict::Stale { row, baseline, now } => format!(
                "STALE: {row} {now} emulated instructions, baseline {baseline} ({:+.2}%, more than {STALE_PERCENT}% \
                 below): baseline is stale: refresh with `{refresh}` and commit it, so that it guards the new count",
                pct(*now, *baseline)
            ),
            Verdict::New { row, now } => format!("new: {row} {now} emulated instructions, not in the baseline"),
        }
    }
}

/// The largest count of `row` that passes.
pub fn allowed(count: &Count) -> f64 {
    let slack = if count.per_op { PER_OP_SLACK } else { 0.0 };
    let growth = (count.insns * GROWTH_PERCENT / 100.0).max(2.0 * count.spread).max(slack);
    count.insns + growth
}

/// Whether a count is the same on every boot (see the module's text).
fn exact(count: &Count) -> bool {
    count.per_op || count.spread == 0.0
}

/// Each count of `now` against `baseline` (counts the run did not measure are left out).
pub fn check(baseline: &InsnBaseline, now: &[Count]) -> Vec<Verdict> {
    now.iter()
        .map(|c| {
            let (row, now) = (c.row.clone(), c.insns);
            match baseline.counts.iter().find(|b| b.row == c.row) {
                None => Verdict::New { row, now },
                Some(b) if now > allowed(b) => Verdict::Grew { row, baseline: b.insns, now, allowed: allowed(b) },
                Some(b) if exact(b) && now < b.insns * (1.0 - STALE_PERCENT / 100.0) => {
                    Verdict::Stale { row, baseline: b.insns, now }
                }
                Some(b) => Verdict::Held { row, baseline: b.insns, now },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(row: &str, insns: f64, per_op: bool) -> Count {
        Count { row: row.to_string(), insns, per_op, spread: 0.0 }
    }

    fn baseline(counts: Vec<Count>) -> InsnBaseline {
        InsnBaseline {
            schema: SCHEMA.into(),
            host_kind: "pvm".into(),
            cpu_model: "cpu".into(),
            lde_version: "0".into(),
            refresh: "lde bench --insns --write-insn-baseline F".into(),
            counts,
        }
    }

    #[test]
    fn growth_beyond_the_margin_fails_and_names_the_row() {
        let base = baseline(vec![count("boot-hello/shutdown", 10_000.0, false), count("syscall-null", 50.0, true)]);
        let verdicts = check(
            &base,
            &[count("boot-hello/shutdown", 10_201.0, false), count("syscall-null", 53.0, true), count("x", 1.0, true)],
        );
        assert!(
            matches!(&verdicts[0], Verdict::Grew { row, allowed, .. } if row == "boot-hello/shutdown" && *allowed == 10_200.0)
        );
        // 3 instructions more is within a per-operation row's slack (2 % of 50 would be 1).
        assert_eq!(verdicts[1], Verdict::Held { row: "syscall-null".into(), baseline: 50.0, now: 53.0 });
        assert_eq!(verdicts[2], Verdict::New { row: "x".into(), now: 1.0 });
        assert_eq!(verdicts.iter().filter(|v| v.failed()).count(), 1);
        let line = verdicts[0].line(&base.refresh);
        assert!(
            line.starts_with("REGRESSION: boot-hello/shutdown 10201 emulated instructions, baseline 10000 (+2.01%"),
            "{line}"
        );
        assert!(line.contains("`lde bench --insns --write-insn-baseline F`"), "{line}");
        let verdicts =
            check(&base, &[count("syscall-null", 53.1, true), count("boot-hello/shutdown", 10_200.0, false)]);
        assert!(verdicts[0].failed() && !verdicts[1].failed(), "{verdicts:?}");
    }

    #[test]
    fn a_count_whose_boots_varied_gets_twice_that_spread() {
        let noisy = Count { spread: 300.0, ..count("boot-empty/shutdown", 10_000.0, false) };
        assert_eq!(allowed(&noisy), 10_600.0);
        let quiet = Count { spread: 3.0, ..noisy.clone() };
        assert_eq!(allowed(&quiet), 10_200.0);
    }

    #[test]
    fn a_count_far_below_its_baseline_makes_it_stale() {
        let base = baseline(vec![count("boot-empty/shutdown", 20_000.0, false)]);
        let fell = check(&base, &[count("boot-empty/shutdown", 17_999.0, false)]);
        assert!(fell[0].failed(), "{fell:?}");
        assert!(fell[0].line(&base.refresh).contains("baseline is stale: refresh with `lde bench"), "{fell:?}");
        let near = check(&base, &[count("boot-empty/shutdown", 18_001.0, false)]);
        assert!(!near[0].failed(), "{near:?}");
        // A count whose boots differed falls under load: no verdict of staleness there.
        let noisy = baseline(vec![Count { spread: 300.0, ..count("boot-empty/shutdown", 20_000.0, false) }]);
        let fell = check(&noisy, &[count("boot-empty/shutdown", 10_000.0, false)]);
        assert!(!fell[0].failed(), "{fell:?}");
    }
}
