//! What `lde bench` reports: the report's types (the `--json` form, schema `lde-bench/4`, which
//! `--baseline` and `--compare` read back; files of `lde-bench/2` and `/3` still read) and the
//! tables it prints.

use serde::{Deserialize, Serialize};

/// One measured operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub description: String,
    /// How the operation reached the kernel or the hypervisor on this host.
    pub path: String,
    pub samples: u64,
    /// Operations timed together in one sample.
    pub per_sample: u64,
    pub min_cycles: u64,
    pub median_cycles: u64,
    pub p99_cycles: u64,
    pub mean_cycles: u64,
    pub min_ns: f64,
    pub median_ns: f64,
    pub p99_ns: f64,
    /// The guest's timer rate during the measurement (null for host measurements).
    pub timer_hz: Option<u32>,
    /// Samples per bin: `[floor, count]`, a bin holding from its floor (cycles) up to the next
    /// bin's; eight log-linear bins per power of two (`lde_abi::histogram`).
    pub histogram: Vec<(u64, u64)>,
    /// Why this row has no figures, if it has none (`lde-bench/4`): the operation could not be
    /// told from the empty loop, or nothing was sampled. Its cycle and ns fields are then 0 and
    /// its histogram is empty: they are no measurement.
    #[serde(default)]
    pub unresolved: Option<String>,
}

/// Emulated instructions per operation of one row (see `insns.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PerOpInsns {
    /// The row of `results` it belongs to.
    pub name: String,
    /// `None` where the host does not count the kernel's instructions.
    pub insns_per_op: Option<f64>,
    /// The operations the difference spans (0 where not measured).
    pub ops: u64,
    /// How it was counted, or why it was not.
    pub method: String,
}

/// One milestone of a boot row, over all its boots.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootMilestone {
    /// `banner`, `first-user` or `shutdown`.
    pub name: String,
    /// Boots that reached it.
    pub reached: u32,
    /// Emulated instructions from power-on (median, min, max); `None` where the host does not
    /// count the kernel's instructions.
    pub insns: Option<u64>,
    pub insns_min: Option<u64>,
    pub insns_max: Option<u64>,
    /// VM exits to lde so far (median), the milestone port's own writes left out.
    pub exits: u64,
    /// Wall time from the start of the run, building the VM included (median, min, max).
    pub wall_ms: f64,
    pub wall_ms_min: f64,
    pub wall_ms_max: f64,
}

/// A boot row: one configuration booted several times.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootRow {
    /// `boot-empty` or `boot-hello`.
    pub name: String,
    /// What ran: a program spec, or `--none`.
    pub run: String,
    pub boots: u32,
    pub timer_hz: u32,
    /// The milestones reached, in boot order.
    pub milestones: Vec<BootMilestone>,
}

/// What `lde bench --json` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub lde_version: String,
    pub host: BenchHost,
    pub tsc_hz: u64,
    pub results: Vec<Measurement>,
    /// Whether KVM's `insn_emulation` counts the kernel's instructions on this host (PVM).
    #[serde(default)]
    pub insns_counted: bool,
    /// Emulated instructions per operation, for the rows that have a way to count them.
    #[serde(default)]
    pub insns_per_op: Vec<PerOpInsns>,
    #[serde(default)]
    pub boot: Vec<BootRow>,
}

impl BenchReport {
    /// A report of `results` on `host`, without instruction counts or boot rows yet.
    pub fn new(host: BenchHost, tsc_hz: u64, results: Vec<Measurement>) -> BenchReport {
        BenchReport {
            schema: super::SCHEMA.to_string(),
            lde_version: env!("CARGO_PKG_VERSION").to_string(),
            host,
            tsc_hz,
            results,
            insns_counted: false,
            insns_per_op: Vec::new(),
            boot: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchHost {
    pub kvm: String,
    pub kvm_description: String,
    pub cpu_model: String,
    pub tsc_khz: Option<u32>,
}

/// The tables `lde bench` prints: the host, the cycle measurements, the instruction counts and
/// the boot rows (each where measured).
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "host: {} on {}{}\n",
        report.host.kvm_description,
        report.host.cpu_model,
        report.host.tsc_khz.map_or(String::new(), |k| format!(", TSC {k} kHz"))
    ));
    if !report.results.is_empty() {
        out.push_str(&cycle_table(report));
    }
    if !report.insns_per_op.is_empty() {
        out.push_str(&per_op_table(report));
    }
    if !report.boot.is_empty() {
        out.push_str(&boot_table(report));
    }
    out
}

fn cycle_table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<13} {:>12} {:>12} {:>12} {:>11} {:>7}  {}\n",
        "measurement", "min cyc", "median cyc", "p99 cyc", "median ns", "n", "path"
    ));
    for m in &report.results {
        match &m.unresolved {
            None => out.push_str(&format!(
                "{:<13} {:>12} {:>12} {:>12} {:>11.1} {:>7}  {}\n",
                m.name, m.min_cycles, m.median_cycles, m.p99_cycles, m.median_ns, m.samples, m.path
            )),
            Some(why) => out.push_str(&format!(
                "{:<13} {:>12} {:>12} {:>12} {:>11} {:>7}  {}\n{:<13} unresolved: {why}\n",
                m.name, "-", "unresolved", "-", "-", m.samples, m.path, ""
            )),
        }
    }
    out
}

fn per_op_table(report: &BenchReport) -> String {
    let mut out = format!(
        "\nemulated instructions per operation (KVM's insn_emulation{})\n",
        if report.insns_counted { "; PVM emulates every ring-0 instruction" } else { ": n/a on this host" }
    );
    out.push_str(&format!("{:<13} {:>9} {:>7}  {}\n", "measurement", "insns/op", "ops", "method"));
    for r in &report.insns_per_op {
        let insns = r.insns_per_op.map_or("n/a".to_string(), |i| format!("{i:.1}"));
        out.push_str(&format!("{:<13} {insns:>9} {:>7}  {}\n", r.name, r.ops, r.method));
    }
    out
}

fn boot_table(report: &BenchReport) -> String {
    let boots = report.boot.iter().map(|r| r.boots).max().unwrap_or(0);
    let mut out = format!(
        "\nboot (timer off, lde.milestones=1; {boots} boot(s) of each, in turn; wall time from the start of the run, building the VM included)\n"
    );
    out.push_str(&format!(
        "{:<11} {:<11} {:>9} {:>19} {:>6} {:>9} {:>17} {:>8}\n",
        "row", "milestone", "insns", "insns min-max", "exits", "wall ms", "wall ms min-max", "x floor"
    ));
    // The floor's time to its port write (`boot-floor`), which every milestone is a multiple of.
    let floor = report
        .boot
        .iter()
        .find(|r| r.name == super::floor::NAME)
        .and_then(|r| r.milestones.iter().find(|m| m.name == "shutdown"))
        .map(|m| m.wall_ms)
        .filter(|ms| *ms > 0.0);
    let mut notes = Vec::new();
    for row in &report.boot {
        for m in &row.milestones {
            let insns = m.insns.map_or("n/a".to_string(), |i| i.to_string());
            let spread = match (m.insns_min, m.insns_max) {
                (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                _ => "n/a".to_string(),
            };
            let ratio = floor.map_or("n/a".to_string(), |f| format!("{:.2}", m.wall_ms / f));
            out.push_str(&format!(
                "{:<11} {:<11} {insns:>9} {spread:>19} {:>6} {:>9.2} {:>17} {ratio:>8}\n",
                row.name,
                m.name,
                m.exits,
                m.wall_ms,
                format!("{:.2}-{:.2}", m.wall_ms_min, m.wall_ms_max)
            ));
            if let (Some(lo), Some(hi)) = (m.insns_min, m.insns_max) {
                if lo != hi {
                    notes.push(format!(
                        "note: {} {}: the emulated instructions differ between boots ({lo} to {hi}, {:.2}%)\n",
                        row.name,
                        m.name,
                        (hi - lo) as f64 * 100.0 / lo.max(1) as f64
                    ));
                }
            }
            if m.reached < row.boots {
                notes.push(format!("note: {} {}: reached in {} of {} boots\n", row.name, m.name, m.reached, row.boots));
            }
        }
    }
    notes.iter().for_each(|n| out.push_str(n));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unresolved_row_has_no_figures_but_a_reason() {
        let host = BenchHost {
            kvm: "nested-svm".into(),
            kvm_description: "nested".into(),
            cpu_model: "CPU".into(),
            tsc_khz: None,
        };
        let row = |name: &str, median: u64, unresolved: Option<&str>| Measurement {
            name: name.into(),
            description: String::new(),
            path: "architectural".into(),
            samples: 1000,
            per_sample: 8,
            min_cycles: median,
            median_cycles: median,
            p99_cycles: median,
            mean_cycles: median,
            min_ns: 0.0,
            median_ns: 0.0,
            p99_ns: 0.0,
            timer_hz: Some(10),
            histogram: vec![],
            unresolved: unresolved.map(String::from),
        };
        let report = BenchReport::new(host, 0, vec![row("int80-null", 796, None), row("syscall-null", 0, Some("why"))]);
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].starts_with("int80-null") && lines[2].contains(" 796 "), "{text}");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["syscall-null", "-", "unresolved", "-", "-", "1000", "architectural"]
        );
        assert_eq!(lines[4].trim(), "unresolved: why", "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["results"][0]["unresolved"].is_null() && json["results"][1]["unresolved"] == "why");
        let mut old = json.clone();
        old["results"][0].as_object_mut().unwrap().remove("unresolved");
        let old: BenchReport = serde_json::from_value(old).unwrap();
        assert!(old.results[0].unresolved.is_none(), "an lde-bench/3 row reads as resolved");
    }
}
