//! `lde bench`: trap-cost microbenchmarks measured in ring 3 of the guest (the built-in `bench`
//! program, in the manner of kvm-unit-tests' x86/vmexit.c), plus two host references measured
//! by lde itself, reported with the path each operation actually took and the host's facts.
//!
//! Where KVM counts the kernel's instructions (PVM), it also counts them: per operation for
//! some rows, and from power-on to the boot milestones for the empty kernel and `hello`.
//!
//! This file is the catalogue of measurements and the sequence of a bench run;
//! `measure.rs` boots the guest and takes the host samples, `insns.rs` counts instructions and
//! boots the boot rows, `percentiles.rs` turns samples into statistics and compares runs,
//! `output.rs` is the report (JSON types, tables), `histogram.rs` draws the SVG histograms,
//! `compare.rs` puts several hosts' results side by side, `insn_baseline.rs` keeps instruction
//! counts in a file and checks a run against it.

mod compare;
mod floor;
mod histogram;
pub mod insn_baseline;
mod insns;
mod ipi;
mod measure;
mod output;
mod percentiles;

use std::sync::{Arc, Mutex};

pub use compare::{compare_svg, compare_table};
pub use histogram::histogram_svg;
pub use insns::{counted as insns_counted, BOOT_ROWS, PER_OP};
pub use output::{table, BenchHost, BenchReport, BootMilestone, BootRow, Measurement, PerOpInsns};
pub use percentiles::{compare, host_mismatch, parse_results, Change, Comparison, GuestResult};

use crate::host::HostInfo;
use crate::observe::report;
use measure::{guest_run, host_syscall_samples};
use percentiles::summarize;

/// The value of the JSON's `schema` field.
/// `lde-bench/4` added `unresolved` to each result (a row without figures says why).
pub const SCHEMA: &str = "lde-bench/4";
/// Boots of each boot row unless told.
pub const DEFAULT_BOOTS: u32 = 7;
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
    (
        "disk-read-4k",
        "4 KiB virtio-blk read from ring 3: from the call through the block, the DMA and the interrupt to running again",
    ),
    ("host-syscall", "host reference: a null Linux system call (getppid) made by lde"),
    ("kvm-run", "host reference: KVM_RUN round trip of a port write, as lde sees it"),
];

/// Why `lde bench` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Run(#[from] crate::Error),
    #[error(transparent)]
    Programs(#[from] crate::initrd::Error),
    #[error("the benchmark guest did not finish: {0}")]
    Guest(String),
    #[error("no measurement matches {0:?}; names: {names}", names = all_names().join(", "))]
    NoMatch(Vec<String>),
    #[error("{} need two processors: add --cpus 2", ipi::names().join(" and "))]
    NeedsCpus,
    #[error("no instruction count among {rows}; counted: {names}", rows = .0.join(", "), names = insn_names().join(", "))]
    NoInsns(Vec<&'static str>),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Run(e) => e.exit_code(),
            Error::Programs(_) | Error::NoMatch(_) | Error::NoInsns(_) | Error::NeedsCpus => lde_abi::exit_code::USAGE,
            Error::Guest(_) => lde_abi::exit_code::GUEST_CRASHED,
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
    /// Only the instruction counts and the boot rows, no cycle measurement.
    pub insns_only: bool,
    /// Boots of each boot row.
    pub boots: u32,
    /// vCPUs (`--cpus`): 2 or more add the `ipi-roundtrip` and `tlb-shootdown` rows.
    pub cpus: u8,
}

fn selected(filters: &[String], name: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Every row's name: the cycle measurements, then the boot rows.
fn all_names() -> Vec<&'static str> {
    MEASUREMENTS.iter().map(|m| m.0).chain(BOOT_ROWS.iter().map(|r| r.0)).collect()
}

/// The rows with instruction counts (`--insns`).
fn insn_names() -> Vec<&'static str> {
    PER_OP.iter().map(|m| m.name).chain(BOOT_ROWS.iter().map(|r| r.0)).collect()
}

/// How a run's system calls arrived: (syscall arch, syscall recovered, int80 arch, int80
/// recovered).
pub(crate) type Doors = (u64, u64, u64, u64);

/// The rows `filters` select (all without filters), cycle measurements and boot rows, with
/// `cpus` of 2 or more also `ipi-roundtrip`, or with `insns_only` the rows with instruction
/// counts; an error if none.
pub fn select(filters: &[String], insns_only: bool, cpus: u8) -> Result<Vec<&'static str>, Error> {
    let mut names: Vec<&str> = all_names().into_iter().filter(|n| selected(filters, n)).collect();
    let two_cpu_rows: Vec<&str> = ipi::names().into_iter().filter(|n| selected(filters, n)).collect();
    match (two_cpu_rows.is_empty(), cpus >= 2) {
        (false, true) => names.extend(two_cpu_rows),
        (false, false) if names.is_empty() => return Err(Error::NeedsCpus),
        _ => {}
    }
    if names.is_empty() {
        return Err(Error::NoMatch(filters.to_vec()));
    }
    if insns_only && !names.iter().any(|n| insn_names().contains(n)) {
        return Err(Error::NoInsns(names));
    }
    Ok(names)
}

/// Boots the `boot-floor` row's bare VM once (for a whole-process timing).
pub fn floor_once(kvm_device: &std::path::Path) -> Result<(), Error> {
    floor::boot(kvm_device).map(|_| ())
}

/// Runs the selected measurements: the cycle measurements (unless `insns_only`), the
/// instruction counts per operation, the boot rows.
pub fn run(config: BenchConfig) -> Result<BenchReport, Error> {
    let selection = select(&config.filters, config.insns_only, config.cpus)?;
    let mut report = cycles(&config, &selection)?;
    let counted = insns::counted(config.host.kvm);
    report.insns_counted = counted.is_ok();
    let methods: Vec<&insns::PerOpMethod> = PER_OP.iter().filter(|m| selection.contains(&m.name)).collect();
    for (i, method) in methods.iter().enumerate() {
        let row = match counted {
            Ok(()) => {
                if !config.quiet {
                    eprintln!("lde: bench insns [{}/{}] {}", i + 1, methods.len(), method.name);
                }
                insns::per_op(method, &config)?
            }
            Err(why) => insns::per_op_not_counted(method, why),
        };
        report.insns_per_op.push(row);
    }
    let boot_rows: Vec<&str> = BOOT_ROWS.iter().map(|r| r.0).filter(|n| selection.contains(n)).collect();
    let total = boot_rows.len() as u32 * config.boots;
    let mut done = 0;
    let progress = |name: &str, round: u32| {
        done += 1;
        if !config.quiet {
            eprintln!("lde: bench boot [{done}/{total}] {name} (boot {} of {})", round + 1, config.boots);
        }
    };
    report.boot = insns::boot_rows(&boot_rows, config.boots, &config, progress)?;
    Ok(report)
}

/// The cycle measurements among `selection` (none with `insns_only`).
fn cycles(config: &BenchConfig, selection: &[&'static str]) -> Result<BenchReport, Error> {
    let cycle_rows = MEASUREMENTS.iter().map(|m| m.0).chain(ipi::names());
    let names: Vec<&'static str> = cycle_rows.filter(|n| selection.contains(n) && !config.insns_only).collect();
    let done = Arc::new(Mutex::new(0));
    let mut runs = guest_runs(config, &names, &done)?;
    let mut two_cpu_rows = [None, None];
    let mut two_cpu_insns = None;
    if names.iter().any(|n| ipi::names().contains(n)) {
        let count_insns = insns::counted(config.host.kvm).is_ok();
        let measured = ipi::measure(config, names.len(), &done, count_insns)?;
        two_cpu_rows = measured.sampled.map(Some);
        two_cpu_insns = measured.insns;
        runs.tsc_khz = runs.tsc_khz.or(measured.tsc_khz);
    }
    let tsc_hz = u64::from(runs.tsc_khz.unwrap_or(0)) * 1000;
    let mut results = Vec::new();
    for name in &names {
        let sampled = match *name {
            "host-syscall" => Some(host_syscall(config, names.len(), &done)),
            "kvm-run" => Some(kvm_run(&runs.kvm_run)),
            n if ipi::names().contains(&n) => {
                two_cpu_rows[ipi::names().iter().position(|x| *x == n).unwrap_or(0)].take()
            }
            _ => runs.sampled(name),
        };
        let Some(sampled) = sampled else {
            return Err(Error::Guest(format!("no result for {name}")));
        };
        results.push(measurement(name, sampled, tsc_hz));
    }
    let host = report::host(&config.host, runs.tsc_khz);
    let host = BenchHost {
        kvm: host.kvm.to_string(),
        kvm_description: host.kvm_description,
        cpu_model: host.cpu_model,
        tsc_khz: runs.tsc_khz,
    };
    let mut report = BenchReport::new(host, tsc_hz, results);
    // The two-processor rows' counts, for the rows selected (their boot measured both).
    let selected_insns = two_cpu_insns.into_iter().flatten().filter(|r| names.contains(&r.name.as_str()));
    report.insns_per_op.extend(selected_insns);
    Ok(report)
}

/// What the bench guest's runs left: each result with the timer rate it ran at, how the
/// system calls arrived, the KVM_RUN samples, the TSC rate.
#[derive(Default)]
struct GuestRuns {
    results: Vec<(GuestResult, u32)>,
    doors: Option<Doors>,
    kvm_run: Vec<u64>,
    tsc_khz: Option<u32>,
    disk: Option<measure::DiskExits>,
}

/// Boots the bench guest for the cycle rows `names`: once at the quiet timer rate for the rows
/// measured in the guest (with `port-write` for `kvm-run`, whose samples lde takes meanwhile),
/// once at the tick rate for `timer-tick`.
fn guest_runs(config: &BenchConfig, names: &[&'static str], done: &Arc<Mutex<usize>>) -> Result<GuestRuns, Error> {
    let in_guest = |n: &&str| !n.starts_with("host-") && *n != "kvm-run" && !ipi::names().contains(n);
    let mut first_run: Vec<&str> = names.iter().copied().filter(in_guest).filter(|n| *n != "timer-tick").collect();
    if names.contains(&"kvm-run") && !first_run.contains(&"port-write") {
        first_run.push("port-write");
    }
    let mut runs = GuestRuns::default();
    if !first_run.is_empty() {
        let run = guest_run(&first_run, QUIET_TIMER_HZ, config, names, done)?;
        runs.results.extend(parse_results(&run.transcript).into_iter().map(|r| (r, QUIET_TIMER_HZ)));
        runs.doors = run.doors;
        runs.kvm_run = run.kvm_run;
        runs.tsc_khz = run.tsc_khz;
        runs.disk = run.disk;
    }
    if names.contains(&"timer-tick") {
        let run = guest_run(&["timer-tick"], TICK_TIMER_HZ, config, names, done)?;
        runs.results.extend(parse_results(&run.transcript).into_iter().map(|r| (r, TICK_TIMER_HZ)));
        runs.tsc_khz = runs.tsc_khz.or(run.tsc_khz);
    }
    Ok(runs)
}

/// One row's samples, summarized, before they become a [`Measurement`].
struct Sampled {
    samples: u64,
    per_sample: u64,
    /// Cycles: min, median, p99, mean, and the histogram.
    stats: (u64, u64, u64, u64, Vec<(u64, u64)>),
    path: String,
    timer_hz: Option<u32>,
    unresolved: Option<String>,
}

impl GuestRuns {
    /// The row `name` as the guest measured it, if it did.
    fn sampled(&self, name: &str) -> Option<Sampled> {
        self.results.iter().find(|(r, _)| r.name == name).map(|(r, hz)| Sampled {
            samples: r.n,
            per_sample: r.k,
            stats: (r.min, r.median, r.p99, r.mean, r.hist.clone()),
            path: match r.name.as_str() {
                "disk-read-4k" => disk_path(self.disk),
                _ => path_of(r, self.doors, *hz),
            },
            timer_hz: Some(*hz),
            unresolved: r.unresolved_reason(),
        })
    }
}

/// `host-syscall`, measured now on the host, with its progress line (row `done` of `rows`).
fn host_syscall(config: &BenchConfig, rows: usize, done: &Mutex<usize>) -> Sampled {
    let mut done = done.lock().expect("progress lock poisoned");
    *done += 1;
    if !config.quiet {
        eprintln!("lde: bench [{}/{}] host-syscall (on the host)", *done, rows);
    }
    let mut s = host_syscall_samples();
    let (samples, stats) = (s.len() as u64, summarize(&mut s));
    Sampled { samples, per_sample: 1, stats, path: "host Linux".to_string(), timer_hz: None, unresolved: None }
}

/// `kvm-run`, from the samples lde took during the quiet run.
fn kvm_run(samples: &[u64]) -> Sampled {
    let mut s = samples.to_vec();
    let (samples, stats) = (s.len() as u64, summarize(&mut s));
    let path = "KVM_RUN ioctl, exit to lde".to_string();
    Sampled { samples, per_sample: 1, stats, path, timer_hz: Some(QUIET_TIMER_HZ), unresolved: None }
}

/// The row `name` of the report, its cycles also in ns at `tsc_hz` (0: unknown, no ns).
fn measurement(name: &str, sampled: Sampled, tsc_hz: u64) -> Measurement {
    let Sampled { samples, per_sample, stats, path, timer_hz, unresolved } = sampled;
    let ns = |cycles: u64| if tsc_hz == 0 { 0.0 } else { cycles as f64 * 1e9 / tsc_hz as f64 };
    // Never a cost of 0: whatever gave no positive median says why instead.
    let unresolved = unresolved.or_else(|| match (samples, stats.1) {
        (0, _) => Some("no samples were taken".to_string()),
        (_, 0) => Some("the median is 0 cycles: below what the TSC resolves here".to_string()),
        _ => None,
    });
    let (min, median, p99, mean, histogram) = match unresolved {
        None => stats,
        Some(_) => (0, 0, 0, 0, Vec::new()),
    };
    Measurement {
        name: name.to_string(),
        description: MEASUREMENTS
            .iter()
            .copied()
            .chain(ipi::ROWS.iter().map(|r| (r.0, r.1)))
            .find(|m| m.0 == name)
            .map_or("", |m| m.1)
            .to_string(),
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
        unresolved,
    }
}

/// The path an operation took, from the guest's counters.
/// The disk row's path: the VM exits to lde each read took (lde's MMIO exits over the run, the
/// device's set-up among them, over the requests the device served), and how the queue
/// notification travelled.
fn disk_path(disk: Option<measure::DiskExits>) -> String {
    match disk {
        Some(d) if d.requests > 0 => format!(
            "virtio-blk, blocked until its interrupt: {:.2} VM exits to lde per read (MMIO: interrupt status and \
             acknowledge); queue notification {}",
            d.mmio_exits as f64 / d.requests as f64,
            if d.ioeventfd { "by ioeventfd, no exit to lde" } else { "by MMIO exit" }
        ),
        _ => "virtio-blk (no request reached the device)".to_string(),
    }
}

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
