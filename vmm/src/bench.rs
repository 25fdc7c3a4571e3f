//! `lde bench`: trap-cost microbenchmarks measured in ring 3 of the guest (the built-in `bench`
//! program, in the manner of kvm-unit-tests' x86/vmexit.c), plus two host references measured
//! by lde itself, reported with the path each operation actually took and the host's facts.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use lde_abi::ports::BENCH_PORT;
use serde::{Deserialize, Serialize};
use svg::node::element::{Group, Line, Rectangle, Text};
use svg::Document;

use crate::devices::serial::SharedBuffer;
use crate::host::HostInfo;
use crate::observe::report;
use crate::vcpu::ExitHook;
use crate::{Outcome, RunConfig};

/// The value of the JSON's `schema` field.
pub const SCHEMA: &str = "lde-bench/1";
/// Timer rate while measuring everything but the tick (low, to disturb little).
pub const QUIET_TIMER_HZ: u32 = 10;
/// Timer rate while measuring the tick by the gap method (high, so ticks dominate the gaps).
pub const TICK_TIMER_HZ: u32 = 1000;

/// The measurements, in the order they run, with what each one is.
pub const MEASUREMENTS: &[(&str, &str)] = &[
    ("syscall-null", "null system call through `syscall`, ring 3 round trip"),
    ("int80-null", "null system call through `int 0x80`, ring 3 round trip"),
    ("exception-ud", "#UD (ud2) round trip; the kernel resumes after the instruction"),
    ("exception-bp", "#BP (int3) round trip"),
    ("exception-pf", "#PF on an unmapped user page, fixed up by the kernel"),
    ("timer-tick", "timer interrupt: a gap in a tight rdtsc loop (delivery, handler, return)"),
    ("yield-self", "yield with no other process: into the scheduler and back, no CR3 change"),
    ("switch-cr3", "switch between two processes (new CR3): half a yield round trip"),
    ("cpuid", "cpuid from ring 3: a VM exit handled inside KVM"),
    ("port-write", "out to the bench port from ring 3: a VM exit handled by lde"),
    ("host-syscall", "host reference: a null Linux system call (getppid) made by lde"),
    ("kvm-run", "host reference: KVM_RUN round trip of a port write, as lde sees it"),
];

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
    /// Samples per power-of-two bucket: `[bucket, count]`, bucket b holding [2^b, 2^(b+1)) cycles.
    pub histogram: Vec<(u32, u64)>,
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
    pub hist: Vec<(u32, u64)>,
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
                hist,
            })
        })
        .collect()
}

fn host_rdtsc() -> u64 {
    // SAFETY: lfence and rdtsc only order and read.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

/// Statistics of samples (sorted in place).
fn summarize(samples: &mut [u64]) -> (u64, u64, u64, u64, Vec<(u32, u64)>) {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return (0, 0, 0, 0, Vec::new());
    }
    let mut hist: BTreeMap<u32, u64> = BTreeMap::new();
    for &v in samples.iter() {
        *hist.entry(63 - v.max(1).leading_zeros()).or_default() += 1;
    }
    let mean = samples.iter().sum::<u64>() / n as u64;
    (samples[0], samples[(n - 1) / 2], samples[(n - 1) * 99 / 100], mean, hist.into_iter().collect())
}

/// The host reference: a null Linux system call, sampled like the guest's measurements.
fn host_syscall_samples() -> Vec<u64> {
    let once = |k: u64| {
        let t0 = host_rdtsc();
        for _ in 0..k {
            // SAFETY: getppid has no arguments and no side effects.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        host_rdtsc() - t0
    };
    let mut k = 1;
    while k < (1 << 20) && once(k) < 200_000 {
        k *= 2;
    }
    (0..3).for_each(|_| {
        once(k);
    });
    (0..1000).map(|_| once(k) / k).collect()
}

/// Durations of KVM_RUN calls that ended in a bench-port write, as lde sees them: guest entry,
/// the guest's `out`, the exit back to lde (host TSC cycles). Installed as the run's exit hook.
#[derive(Clone, Default)]
struct BenchPortRoundTrips(Arc<Mutex<Vec<u64>>>);

impl BenchPortRoundTrips {
    /// Most samples kept.
    const MAX: usize = 100_000;

    /// The samples so far.
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut self.0.lock().expect("samples lock poisoned"))
    }
}

impl ExitHook for BenchPortRoundTrips {
    fn after_exit(&mut self, exit: &kvm_ioctls::VcpuExit<'_>, cycles: u64) {
        if matches!(exit, kvm_ioctls::VcpuExit::IoOut(BENCH_PORT, _)) {
            let mut v = self.0.lock().expect("samples lock poisoned");
            if v.len() < Self::MAX {
                v.push(cycles);
            }
        }
    }
}

/// Echoes the guest's `bench: measuring X` lines as progress on stderr, and keeps everything.
struct Progress {
    buffer: SharedBuffer,
    line: Vec<u8>,
    total: usize,
    done: Arc<Mutex<usize>>,
    quiet: bool,
}

impl Write for Progress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.write_all(buf)?;
        for &b in buf {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_string();
                if let Some(name) = line.strip_prefix("bench: measuring ") {
                    let mut done = self.done.lock().expect("progress lock poisoned");
                    *done += 1;
                    if !self.quiet {
                        eprintln!("lde bench: [{}/{}] {name}", *done, self.total);
                    }
                }
                self.line.clear();
            } else {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why `lde bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Run(#[from] crate::Error),
    #[error(transparent)]
    Programs(#[from] crate::initrd::Error),
    #[error("the benchmark guest did not finish: {0}")]
    Guest(String),
    #[error("no measurement matches {0:?}; names: {names}", names = MEASUREMENTS.iter().map(|m| m.0).collect::<Vec<_>>().join(", "))]
    NoMatch(Vec<String>),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Run(e) => e.exit_code(),
            Error::Programs(_) | Error::NoMatch(_) => lde_abi::exit::USAGE,
            Error::Guest(_) => lde_abi::exit::GUEST_CRASHED,
        }
    }
}

/// How to run the benchmarks.
pub struct BenchConfig {
    pub filters: Vec<String>,
    pub kvm_device: std::path::PathBuf,
    pub host: HostInfo,
    pub quiet: bool,
    pub timeout: std::time::Duration,
}

fn selected(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// How a run's system calls arrived: (syscall arch, syscall recovered, int80 arch, int80
/// recovered).
type Doors = (u64, u64, u64, u64);

/// What one boot of the benchmark guest left.
struct GuestRun {
    transcript: String,
    doors: Option<Doors>,
    kvm_run: Vec<u64>,
    tsc_khz: Option<u32>,
}

/// Boots the guest once with `bench NAMES…` at `hz`.
fn guest_run(
    names: &[&str],
    hz: u32,
    config: &BenchConfig,
    total: usize,
    done: &Arc<Mutex<usize>>,
) -> Result<GuestRun, Error> {
    let spec = std::iter::once("bench").chain(names.iter().copied()).collect::<Vec<_>>().join(" ");
    let programs = crate::initrd::prepare(&[spec], Vec::new())?;
    let buffer = SharedBuffer::default();
    let progress =
        Progress { buffer: buffer.clone(), line: Vec::new(), total, done: done.clone(), quiet: config.quiet };
    let samples = BenchPortRoundTrips::default();
    let cmdline = format!("{} lde.hz={hz} lde.timer=periodic lde.slice=1", programs.cmdline);
    let mut run_config = RunConfig::unattended(
        cmdline,
        programs.initrd,
        Box::new(progress),
        config.timeout,
        config.kvm_device.clone(),
        config.host.clone(),
    );
    run_config.exit_hook = Some(Box::new(samples.clone()));
    let run = crate::run(run_config)?;
    let transcript = String::from_utf8_lossy(&buffer.0.lock().expect("buffer lock poisoned")).into_owned();
    match &run.outcome {
        Outcome::GuestExit(0) => {}
        other => {
            let tail: Vec<&str> = transcript.lines().rev().take(5).collect();
            return Err(Error::Guest(format!(
                "{other:?}; last output: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
    }
    let doors = run.stats().map(|p| (p.syscall_arch, p.syscall_recovered, p.int80_arch, p.int80_recovered));
    Ok(GuestRun { transcript, doors, kvm_run: samples.take(), tsc_khz: run.tsc_khz })
}

/// The measurements `filters` select (all without filters); an error if none.
pub fn select(filters: &[String]) -> Result<Vec<&'static str>, Error> {
    let names: Vec<&str> = MEASUREMENTS.iter().map(|m| m.0).filter(|n| selected(filters, n)).collect();
    if names.is_empty() {
        return Err(Error::NoMatch(filters.to_vec()));
    }
    Ok(names)
}

/// Runs the selected measurements.
pub fn run(config: BenchConfig) -> Result<BenchReport, Error> {
    let names = select(&config.filters)?;
    let in_guest = |n: &&str| !n.starts_with("host-") && *n != "kvm-run";
    let quiet_names: Vec<&str> = names.iter().copied().filter(in_guest).filter(|n| *n != "timer-tick").collect();
    let want_kvm_run = names.contains(&"kvm-run");
    let mut first_run: Vec<&str> = quiet_names.clone();
    if want_kvm_run && !first_run.contains(&"port-write") {
        first_run.push("port-write");
    }
    let total = first_run.len() + usize::from(names.contains(&"timer-tick"));
    let done = Arc::new(Mutex::new(0));

    let mut guest: Vec<(GuestResult, u32)> = Vec::new();
    let mut doors = None;
    let mut kvm_run = Vec::new();
    let mut tsc_khz = None;
    if !first_run.is_empty() {
        let run = guest_run(&first_run, QUIET_TIMER_HZ, &config, total, &done)?;
        guest.extend(parse_results(&run.transcript).into_iter().map(|r| (r, QUIET_TIMER_HZ)));
        doors = run.doors;
        kvm_run = run.kvm_run;
        tsc_khz = run.tsc_khz;
    }
    if names.contains(&"timer-tick") {
        let run = guest_run(&["timer-tick"], TICK_TIMER_HZ, &config, total, &done)?;
        guest.extend(parse_results(&run.transcript).into_iter().map(|r| (r, TICK_TIMER_HZ)));
        tsc_khz = tsc_khz.or(run.tsc_khz);
    }
    let tsc_hz = u64::from(tsc_khz.unwrap_or(0)) * 1000;
    let ns = |cycles: u64| if tsc_hz == 0 { 0.0 } else { cycles as f64 * 1e9 / tsc_hz as f64 };
    let describe = |name: &str| MEASUREMENTS.iter().find(|m| m.0 == name).map_or("", |m| m.1).to_string();

    let mut results = Vec::new();
    for name in &names {
        let measurement = if *name == "host-syscall" {
            if !config.quiet {
                eprintln!("lde bench: host-syscall (on the host)");
            }
            let mut s = host_syscall_samples();
            Some((s.len() as u64, 1, summarize(&mut s), "host Linux".to_string(), None))
        } else if *name == "kvm-run" {
            let mut s = kvm_run.clone();
            Some((s.len() as u64, 1, summarize(&mut s), "KVM_RUN ioctl, exit to lde".to_string(), Some(QUIET_TIMER_HZ)))
        } else {
            guest.iter().find(|(r, _)| r.name == *name).map(|(r, hz)| {
                let path = path_of(r, doors, *hz);
                (r.n, r.k, (r.min, r.median, r.p99, r.mean, r.hist.clone()), path, Some(*hz))
            })
        };
        let Some((samples, per_sample, (min, median, p99, mean, histogram), path, timer_hz)) = measurement else {
            return Err(Error::Guest(format!("no result for {name}")));
        };
        results.push(Measurement {
            name: name.to_string(),
            description: describe(name),
            path,
            samples,
            per_sample,
            min_cycles: min,
            median_cycles: median,
            p99_cycles: p99,
            mean_cycles: mean,
            min_ns: ns(min),
            median_ns: ns(median),
            p99_ns: ns(p99),
            timer_hz,
            histogram,
        });
    }
    let host = report::host(&config.host, tsc_khz);
    Ok(BenchReport {
        schema: SCHEMA.to_string(),
        lde_version: env!("CARGO_PKG_VERSION").to_string(),
        host: BenchHost {
            kvm: host.kvm.to_string(),
            kvm_description: host.kvm_description,
            cpu_model: host.cpu_model,
            tsc_khz,
        },
        tsc_hz,
        results,
    })
}

/// The path an operation took, from the guest's counters.
fn path_of(r: &GuestResult, doors: Option<Doors>, hz: u32) -> String {
    let door = |arch: u64, recovered: u64, how: &str| match (arch, recovered) {
        (0, 0) => "unknown".to_string(),
        (_, 0) => "architectural".to_string(),
        (0, _) => format!("recovered: {how}"),
        _ => "mixed".to_string(),
    };
    match r.name.as_str() {
        "syscall-null" | "yield-self" | "switch-cr3" => match doors {
            Some((a, rec, _, _)) => door(a, rec, "#PF at LSTAR in ring 3, completed by the kernel"),
            None => "unknown".to_string(),
        },
        "int80-null" => match doors {
            Some((_, _, a, rec)) => door(a, rec, "#UD at the int instruction, completed by the kernel"),
            None => "unknown".to_string(),
        },
        "exception-ud" | "exception-bp" | "exception-pf" if r.fixups > 0 => "architectural".to_string(),
        "exception-ud" | "exception-bp" | "exception-pf" => "not delivered".to_string(),
        "timer-tick" => format!("LAPIC timer at {hz} Hz"),
        "cpuid" => "VM exit handled in KVM".to_string(),
        "port-write" if r.fixups == 0 => "VM exit to lde".to_string(),
        "port-write" => "not allowed from ring 3 on this host (#GP, fixed up)".to_string(),
        _ => "unknown".to_string(),
    }
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

/// A median that got worse than the baseline allows.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression {
    pub name: String,
    pub baseline: u64,
    pub now: u64,
    pub percent: f64,
}

/// Medians more than `max_percent` above the baseline's (names in both only).
pub fn regressions(report: &BenchReport, baseline: &BenchReport, max_percent: f64) -> Vec<Regression> {
    report
        .results
        .iter()
        .filter_map(|m| {
            let base = baseline.results.iter().find(|b| b.name == m.name)?;
            if base.median_cycles == 0 {
                return None;
            }
            let percent = (m.median_cycles as f64 / base.median_cycles as f64 - 1.0) * 100.0;
            (percent > max_percent).then(|| Regression {
                name: m.name.clone(),
                baseline: base.median_cycles,
                now: m.median_cycles,
                percent,
            })
        })
        .collect()
}

/// One histogram per measurement, in a column.
pub fn histogram_svg(report: &BenchReport) -> Document {
    const W: f64 = 900.0;
    const ROW: f64 = 110.0;
    const LEFT: f64 = 160.0;
    let height = 50.0 + ROW * report.results.len() as f64;
    let mut doc = Document::new()
        .set("width", W)
        .set("height", height)
        .set("viewBox", (0, 0, W, height))
        .set("font-family", "sans-serif")
        .set("font-size", 11)
        .add(Rectangle::new().set("width", W).set("height", height).set("fill", "white"))
        .add(
            Text::new(format!("lde bench on {} ({})", report.host.cpu_model, report.host.kvm))
                .set("x", 10)
                .set("y", 20)
                .set("font-size", 14),
        );
    let lo = report.results.iter().flat_map(|m| m.histogram.iter().map(|h| h.0)).min().unwrap_or(0);
    let hi = report.results.iter().flat_map(|m| m.histogram.iter().map(|h| h.0)).max().unwrap_or(1).max(lo + 1);
    let bucket_w = (W - LEFT - 20.0) / f64::from(hi - lo + 1);
    for (i, m) in report.results.iter().enumerate() {
        let y0 = 40.0 + ROW * i as f64;
        let max = m.histogram.iter().map(|h| h.1).max().unwrap_or(1).max(1);
        let mut g = Group::new().set("class", "histogram").set("data-name", m.name.as_str());
        g = g.add(Text::new(m.name.as_str()).set("x", 10).set("y", y0 + 40.0).set("font-weight", "bold"));
        g = g.add(Text::new(format!("median {} cyc", m.median_cycles)).set("x", 10).set("y", y0 + 56.0));
        for &(b, c) in &m.histogram {
            let h = c as f64 / max as f64 * (ROW - 35.0);
            g = g.add(
                Rectangle::new()
                    .set("x", LEFT + f64::from(b - lo) * bucket_w)
                    .set("y", y0 + ROW - 30.0 - h)
                    .set("width", bucket_w - 2.0)
                    .set("height", h)
                    .set("fill", "#4a90d9"),
            );
        }
        g = g.add(
            Line::new()
                .set("x1", LEFT)
                .set("x2", W - 20.0)
                .set("y1", y0 + ROW - 30.0)
                .set("y2", y0 + ROW - 30.0)
                .set("stroke", "#999"),
        );
        for b in lo..=hi {
            g = g.add(
                Text::new(format!("2^{b}"))
                    .set("x", LEFT + f64::from(b - lo) * bucket_w + bucket_w / 2.0)
                    .set("y", y0 + ROW - 17.0)
                    .set("text-anchor", "middle")
                    .set("font-size", 9),
            );
        }
        doc = doc.add(g);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        let t = "bench: measuring syscall-null\r\nbench result name=syscall-null n=1000 k=4 min=10 median=12 p99=30 mean=13 fixups=0 hist=3:900,4:100\r\nnoise\n";
        let r = parse_results(t);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "syscall-null");
        assert_eq!((r[0].n, r[0].k, r[0].min, r[0].median, r[0].p99, r[0].mean), (1000, 4, 10, 12, 30, 13));
        assert_eq!(r[0].hist, vec![(3, 900), (4, 100)]);
    }

    #[test]
    fn summary_statistics() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let (min, median, p99, mean, hist) = summarize(&mut s);
        assert_eq!((min, median, p99, mean), (1, 50, 99, 50));
        assert_eq!(hist.iter().map(|h| h.1).sum::<u64>(), 100);
        assert_eq!(hist[0], (0, 1));
    }

    fn report_with(median: u64) -> BenchReport {
        BenchReport {
            schema: SCHEMA.into(),
            lde_version: "0".into(),
            host: BenchHost {
                kvm: "pvm".into(),
                kvm_description: String::new(),
                cpu_model: String::new(),
                tsc_khz: None,
            },
            tsc_hz: 0,
            results: vec![Measurement {
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
            }],
        }
    }

    #[test]
    fn regressions_beyond_the_allowance() {
        let base = report_with(1000);
        assert!(regressions(&report_with(1099), &base, 10.0).is_empty());
        let r = regressions(&report_with(1200), &base, 10.0);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].baseline, r[0].now), (1000, 1200));
        assert!((r[0].percent - 20.0).abs() < 1e-9);
    }
}
