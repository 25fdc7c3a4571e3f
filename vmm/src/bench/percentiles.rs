//! Turning samples into numbers: the guest's `bench result` lines, min/median/p99/mean and a
//! log-linear histogram of host samples (the bins of `lde_abi::histogram`), and the comparison
//! of a run with a baseline.

use std::collections::BTreeMap;

use super::output::BenchReport;

/// A `bench result` line of the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestResult {
    pub name: String,
    pub n: u64,
    pub k: u64,
    pub min: u64,
    pub median: u64,
    pub p99: u64,
    pub mean: u64,
    pub fixups: u64,
    /// The empty loop's fastest run and its spread (median less fastest), cycles per sample.
    pub empty: u64,
    pub spread: u64,
    /// Samples not above the empty loop.
    pub below: u64,
    /// Set when the guest could not tell the operation from the empty loop: `below` (samples
    /// not above it) or `noise` (the difference within twice the empty loop's spread).
    pub unresolved: Option<String>,
    /// `(bin floor in cycles, samples)`.
    pub hist: Vec<(u64, u64)>,
}

impl GuestResult {
    /// Why this result is no cost, in words, if it is none.
    pub fn unresolved_reason(&self) -> Option<String> {
        let largest = format!("with {} operations per sample, the largest loop tried", self.k);
        match self.unresolved.as_deref()? {
            _ if self.n == 0 => Some("no samples were taken".to_string()),
            "below" => Some(format!(
                "{} of {} samples were not above the empty loop ({} cycles), {largest}",
                self.below, self.n, self.empty
            )),
            "noise" => Some(format!(
                "the median is {} cycles per operation above the empty loop ({} per sample), within twice the empty loop's own spread ({} cycles), {largest}",
                self.median,
                self.median.saturating_mul(self.k),
                self.spread
            )),
            other => Some(format!("the guest says {other:?}")),
        }
    }
}

/// Parses `bench result name=… n=… …` lines.
pub fn parse_results(transcript: &str) -> Vec<GuestResult> {
    transcript
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("bench result "))
        .filter_map(|rest| {
            let kv: BTreeMap<&str, &str> = rest.split_whitespace().filter_map(|w| w.split_once('=')).collect();
            let num = |k: &str| kv.get(k)?.parse::<u64>().ok();
            let hist = kv
                .get("hist")
                .map(|h| {
                    h.split(',')
                        .filter_map(|p| p.split_once(':'))
                        .filter_map(|(b, c)| Some((b.parse().ok()?, c.parse().ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            Some(GuestResult {
                name: kv.get("name")?.to_string(),
                n: num("n")?,
                k: num("k").unwrap_or(1),
                min: num("min").unwrap_or(0),
                median: num("median").unwrap_or(0),
                p99: num("p99").unwrap_or(0),
                mean: num("mean").unwrap_or(0),
                fixups: num("fixups").unwrap_or(0),
                empty: num("empty").unwrap_or(0),
                spread: num("spread").unwrap_or(0),
                below: num("below").unwrap_or(0),
                unresolved: kv.get("unresolved").map(|w| w.to_string()),
                hist,
            })
        })
        .collect()
}

/// Statistics of samples (sorted in place).
pub(super) fn summarize(samples: &mut [u64]) -> (u64, u64, u64, u64, Vec<(u64, u64)>) {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return (0, 0, 0, 0, Vec::new());
    }
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    for &v in samples.iter() {
        *hist.entry(lde_abi::histogram::bin_floor(v)).or_default() += 1;
    }
    let mean = (samples.iter().map(|&v| u128::from(v)).sum::<u128>() / n as u128) as u64;
    (samples[0], samples[(n - 1) / 2], samples[(n - 1) * 99 / 100], mean, hist.into_iter().collect())
}

/// One median compared with the baseline's.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub name: String,
    pub baseline: u64,
    pub now: u64,
    /// How much higher (positive: slower) the median is now, in percent.
    pub percent: f64,
}

impl Change {
    /// Slower by more than `max_percent`.
    pub fn regressed(&self, max_percent: f64) -> bool {
        self.percent > max_percent
    }

    /// Faster by more than `max_percent`.
    pub fn improved(&self, max_percent: f64) -> bool {
        self.percent < -max_percent
    }
}

/// A run compared with a baseline: the medians of the measurements both have, those only
/// this run has, and those without a median in one of the two (unresolved).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    pub changes: Vec<Change>,
    pub not_in_baseline: Vec<String>,
    pub unresolved: Vec<String>,
}

/// Compares the medians of `report` with those of `baseline`.
pub fn compare(report: &BenchReport, baseline: &BenchReport) -> Comparison {
    let mut comparison = Comparison::default();
    for m in &report.results {
        let base = baseline.results.iter().find(|b| b.name == m.name);
        if m.unresolved.is_some() || base.is_some_and(|b| b.unresolved.is_some() || b.median_cycles == 0) {
            comparison.unresolved.push(m.name.clone());
            continue;
        }
        match base {
            Some(base) => comparison.changes.push(Change {
                name: m.name.clone(),
                baseline: base.median_cycles,
                now: m.median_cycles,
                percent: (m.median_cycles as f64 / base.median_cycles as f64 - 1.0) * 100.0,
            }),
            None => comparison.not_in_baseline.push(m.name.clone()),
        }
    }
    comparison
}

/// Why cycles of `baseline` cannot be compared with this host's (another kind of KVM or
/// another CPU), if they cannot.
pub fn host_mismatch(baseline: &BenchReport, kvm: &str, cpu_model: &str) -> Option<String> {
    let (b_kvm, b_cpu) = (baseline.host.kvm.as_str(), baseline.host.cpu_model.as_str());
    (b_kvm != kvm || b_cpu != cpu_model).then(|| {
        format!("the baseline was measured on {b_kvm} ({b_cpu}), this host is {kvm} ({cpu_model}): its cycles are not comparable")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::output::{BenchHost, Measurement};

    #[test]
    fn parses_result_lines() {
        let t = "bench: measuring syscall-null\r\nbench result name=syscall-null n=1000 k=4 min=10 median=12 p99=30 mean=13 fixups=0 hist=3:900,4:100\r\nnoise\n";
        let r = parse_results(t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "syscall-null");
        assert_eq!((r[0].n, r[0].k, r[0].min, r[0].median, r[0].p99, r[0].mean), (1000, 4, 10, 12, 30, 13));
        assert_eq!(r[0].hist, vec![(3, 900), (4, 100)]);
        assert_eq!(r[0].unresolved_reason(), None);
    }

    #[test]
    fn an_unresolved_result_says_why() {
        let t = "bench result name=syscall-null n=1000 k=4096 min=0 median=0 p99=3 mean=0 empty=26000 spread=400 below=945 fixups=0 unresolved=below hist=0:945,2:55\n\
                 bench result name=int80-null n=1000 k=64 min=1 median=2 p99=3 mean=2 empty=700 spread=200 below=0 fixups=0 unresolved=noise hist=1:1000\n";
        let r = parse_results(t);
        assert_eq!((r[0].empty, r[0].spread, r[0].below), (26000, 400, 945));
        let why = r[0].unresolved_reason().unwrap();
        assert!(why.starts_with("945 of 1000 samples were not above the empty loop (26000 cycles)"), "{why}");
        assert!(why.ends_with("with 4096 operations per sample, the largest loop tried"), "{why}");
        let why = r[1].unresolved_reason().unwrap();
        assert!(why.contains("2 cycles per operation above the empty loop (128 per sample)"), "{why}");
        assert!(why.contains("spread (200 cycles)"), "{why}");
    }

    #[test]
    fn summary_statistics() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let (min, median, p99, mean, hist) = summarize(&mut s);
        assert_eq!((min, median, p99, mean), (1, 50, 99, 50));
        assert_eq!(hist.iter().map(|h| h.1).sum::<u64>(), 100);
        assert_eq!(hist[0], (1, 1));
        assert_eq!(hist.iter().find(|h| h.0 == 48), Some(&(48, 4)), "48..52 holds 4 samples");
    }

    fn report_with(median: u64) -> BenchReport {
        let host =
            BenchHost { kvm: "pvm".into(), kvm_description: String::new(), cpu_model: String::new(), tsc_khz: None };
        let results = vec![Measurement {
            name: "cpuid".into(),
            description: String::new(),
            path: String::new(),
            samples: 1,
            per_sample: 1,
            min_cycles: 1,
            median_cycles: median,
            p99_cycles: 1,
            mean_cycles: 1,
            min_ns: 0.0,
            median_ns: 0.0,
            p99_ns: 0.0,
            timer_hz: None,
            histogram: vec![],
            unresolved: None,
        }];
        BenchReport::new(host, 0, results)
    }

    #[test]
    fn compares_the_medians_both_have() {
        let base = report_with(1000);
        let c = compare(&report_with(1099), &base);
        assert_eq!(c.changes.len(), 1);
        assert!(!c.changes[0].regressed(10.0) && !c.changes[0].improved(10.0));
        let c = compare(&report_with(1200), &base);
        assert_eq!((c.changes[0].baseline, c.changes[0].now), (1000, 1200));
        assert!((c.changes[0].percent - 20.0).abs() < 1e-9 && c.changes[0].regressed(10.0));
        assert!(compare(&report_with(500), &base).changes[0].improved(10.0));
        let mut other = report_with(1000);
        other.results[0].name = "kvm-run".into();
        let c = compare(&other, &base);
        assert!(c.changes.is_empty());
        assert_eq!(c.not_in_baseline, vec!["kvm-run".to_string()]);
        let mut unresolved = report_with(0);
        unresolved.results[0].unresolved = Some("why".into());
        let c = compare(&unresolved, &base);
        assert!(c.changes.is_empty() && c.not_in_baseline.is_empty(), "{c:?}");
        assert_eq!(c.unresolved, vec!["cpuid".to_string()]);
        assert_eq!(compare(&base, &unresolved).unresolved, vec!["cpuid".to_string()], "nor against one");
        assert!(host_mismatch(&base, "pvm", "").is_none());
        assert!(host_mismatch(&base, "nested-vmx", "").unwrap().contains("not comparable"));
    }
}
