//! What `lde bench` reports: the report's types (the `--json` form, schema `lde-bench/2`, which
//! `--baseline` and `--compare` read back) and the table it prints.

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
}

/// What `lde bench --json` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub lde_version: String,
    pub host: BenchHost,
    pub tsc_hz: u64,
    pub results: Vec<Measurement>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchHost {
    pub kvm: String,
    pub kvm_description: String,
    pub cpu_model: String,
    pub tsc_khz: Option<u32>,
}

/// The table `lde bench` prints.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "host: {} on {}, TSC {} kHz\n",
        report.host.kvm_description,
        report.host.cpu_model,
        report.host.tsc_khz.map_or("?".to_string(), |k| k.to_string())
    ));
    out.push_str(&format!(
        "{:<13} {:>12} {:>12} {:>12} {:>11} {:>7}  {}\n",
        "measurement", "min cyc", "median cyc", "p99 cyc", "median ns", "n", "path"
    ));
    for m in &report.results {
        out.push_str(&format!(
            "{:<13} {:>12} {:>12} {:>12} {:>11.1} {:>7}  {}\n",
            m.name, m.min_cycles, m.median_cycles, m.p99_cycles, m.median_ns, m.samples, m.path
        ));
    }
    out
}
