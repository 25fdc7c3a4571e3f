//! The rows of a boot with two processors (only with `lde bench --cpus 2` or more): lde boots the
//! kernel with two vCPUs (and so `lde.cpus=2`); the kernel's processor 0 times, at boot, fixed
//! IPIs to processor 1 and their answers (`ipi-roundtrip`), then one-page TLB shootdowns to it
//! (`tlb-shootdown`: the IPI, `invlpg` there, the answer; guest/kernel/src/ipi_roundtrip.rs) and
//! prints one line for each, which this file reads.
//!
//! Where KVM counts the kernel's emulated instructions (PVM), the boot runs with the kernel's
//! milestones on: it marks the start and the end of each row's timed samples, and a VM-exit hook
//! reads both vCPUs' `insn_emulation` there. Processor 1's count over the samples, divided by
//! them, is its answer and the wake of its idle loop (nearly the same every run: where an IPI
//! finds it moves the wake by a few instructions now and then); processor 0's includes its spin
//! loop, whose rounds vary, and is given for what it is.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VcpuExit;
use lde_abi::cmdline::MILESTONES_KEY;
use lde_abi::ports::{MILESTONE_PORT, MILESTONE_TIMED_END, MILESTONE_TIMED_START};

use super::measure::Boot;
use super::output::PerOpInsns;
use super::{BenchConfig, Error, Sampled, QUIET_TIMER_HZ};
use crate::observe::kvm_stats::KvmStats;
use crate::observe::milestones::INSN_EMULATION;
use crate::vcpu::VmExitHook;

/// The rows: name, description, the kernel line's subject, how the path is described.
pub const ROWS: [(&str, &str, &str, &str); 2] = [
    (
        "ipi-roundtrip",
        "fixed IPI from CPU 0 to CPU 1 and its answer, timed by the kernel at boot (--cpus 2)",
        "ipi round trip to cpu 1",
        "fixed IPI CPU 0 -> CPU 1 and back, measured by the guest's TSC",
    ),
    (
        "tlb-shootdown",
        "one-page TLB shootdown from CPU 0 to CPU 1 (IPI, invlpg, answer), timed by the kernel at boot (--cpus 2)",
        "tlb shootdown to cpu 1 (one page)",
        "shootdown IPI CPU 0 -> CPU 1 through the common trap path, invlpg, answer seen, measured by the guest's TSC",
    ),
];

/// The names of the rows.
pub fn names() -> [&'static str; 2] {
    ROWS.map(|r| r.0)
}

/// vCPUs the rows' boot has.
const CPUS: u8 = 2;

/// The figures of the kernel's `kernel: SUBJECT: median …` line: (median, min, p99, mean, n).
fn parse(transcript: &str, subject: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let prefix = format!("kernel: {subject}: median ");
    let line = transcript.lines().find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))?;
    let (median, rest) = line.split_once(" cycles, min ")?;
    let (min, rest) = rest.split_once(", p99 ")?;
    let (p99, rest) = rest.split_once(", mean ")?;
    let (mean, n) = rest.split_once(", n ")?;
    let number = |s: &str| s.trim().parse::<u64>().ok();
    Some((number(median)?, number(min)?, number(p99)?, number(mean)?, number(n)?))
}

/// Why the transcript holds no figures for a row.
fn why_none(transcript: &str) -> String {
    if transcript.contains("to cpu 1 got no answer") {
        "cpu 1 did not answer an IPI within the kernel's deadline".to_string()
    } else if transcript.contains("kernel: cpu 1 online") {
        "the kernel printed no figures".to_string()
    } else {
        "no second processor came online".to_string()
    }
}

/// Row `row` (an index of [`ROWS`]) from a boot's transcript; unresolved (with the reason) if
/// the kernel measured nothing.
fn sampled(transcript: &str, row: usize) -> Sampled {
    let (_, _, subject, path) = ROWS[row];
    let path = path.to_string();
    match parse(transcript, subject) {
        Some((median, min, p99, mean, n)) => Sampled {
            samples: n,
            per_sample: 1,
            stats: (min, median, p99, mean, Vec::new()),
            path,
            timer_hz: None,
            unresolved: None,
        },
        None => Sampled {
            samples: 0,
            per_sample: 1,
            stats: (0, 0, 0, 0, Vec::new()),
            path,
            timer_hz: None,
            unresolved: Some(why_none(transcript)),
        },
    }
}

/// What both rows' boot gave: the rows, their emulated instructions where counted, the TSC rate.
pub(super) struct TwoCpuRows {
    pub sampled: [Sampled; 2],
    pub insns: Option<[PerOpInsns; 2]>,
    pub tsc_khz: Option<u32>,
}

/// Boots `hello` on two vCPUs and reads both rows, with its progress line (row `done` of
/// `rows`); `count_insns`: this host counts the kernel's emulated instructions.
pub(super) fn measure(
    config: &BenchConfig,
    rows: usize,
    done: &Mutex<usize>,
    count_insns: bool,
) -> Result<TwoCpuRows, Error> {
    {
        let mut done = done.lock().expect("progress lock poisoned");
        *done += 1;
        if !config.quiet {
            eprintln!("lde: bench [{}/{}] ipi-roundtrip, tlb-shootdown (cpu 0 -> cpu 1, at boot)", *done, rows);
        }
    }
    let programs = crate::initrd::prepare(&["hello".to_string()], Vec::new())?;
    let blocks = TimedBlocks::default();
    let milestones = format!("{MILESTONES_KEY}=1");
    let mut boot = Boot { cpus: CPUS, ..Boot::quiet(programs, QUIET_TIMER_HZ) };
    if count_insns {
        boot.extra = &milestones;
        boot.hook = Some(Box::new(blocks.clone()));
    }
    let (run, transcript) = boot.run(config)?;
    let sampled = [sampled(&transcript, 0), sampled(&transcript, 1)];
    let insns = count_insns.then(|| blocks.rows(&sampled));
    Ok(TwoCpuRows { sampled, insns, tsc_khz: run.tsc_khz })
}

/// Both vCPUs' emulated instructions at each start and end of a timed block: (vCPU 0, vCPU 1).
#[derive(Clone, Default)]
struct TimedBlocks(Arc<Mutex<Blocks>>);

#[derive(Default)]
struct Blocks {
    stats: Vec<Arc<KvmStats>>,
    /// (start or end, vCPU 0's count, vCPU 1's count), in order.
    marks: Vec<(u8, u64, u64)>,
}

impl VmExitHook for TimedBlocks {
    fn after_exit(&mut self, exit: &VcpuExit<'_>, _cycles: u64) {
        let VcpuExit::IoOut(MILESTONE_PORT, [mark @ (MILESTONE_TIMED_START | MILESTONE_TIMED_END)]) = exit else {
            return;
        };
        let mut blocks = self.0.lock().expect("timed blocks lock poisoned");
        let counts: Vec<u64> = blocks.stats.iter().filter_map(|s| s.value(INSN_EMULATION)).collect();
        if let [first, second, ..] = counts[..] {
            blocks.marks.push((*mark, first, second));
        }
    }

    fn attach_kvm_stats(&mut self, stats: Arc<KvmStats>) {
        self.0.lock().expect("timed blocks lock poisoned").stats.insert(0, stats);
    }

    fn attach_other_kvm_stats(&mut self, stats: Vec<Arc<KvmStats>>) {
        self.0.lock().expect("timed blocks lock poisoned").stats.extend(stats.into_iter().take(1));
    }
}

impl TimedBlocks {
    /// The rows' emulated instructions per sample, block `i` for row `i`.
    fn rows(&self, sampled: &[Sampled; 2]) -> [PerOpInsns; 2] {
        let marks = self.0.lock().expect("timed blocks lock poisoned").marks.clone();
        std::array::from_fn(|row| per_sample(row, &marks, sampled[row].samples))
    }
}

/// Row `row`'s count from the marks: its block is the `row`-th start with the end after it.
fn per_sample(row: usize, marks: &[(u8, u64, u64)], samples: u64) -> PerOpInsns {
    let name = ROWS[row].0.to_string();
    let start = marks.iter().filter(|m| m.0 == MILESTONE_TIMED_START).nth(row);
    let end = marks.iter().filter(|m| m.0 == MILESTONE_TIMED_END).nth(row);
    match (start, end) {
        (Some(s), Some(e)) if samples > 0 && e.2 >= s.2 && e.1 >= s.1 => {
            let n = samples as f64;
            PerOpInsns {
                name,
                insns_per_op: Some((e.2 - s.2) as f64 / n),
                ops: samples,
                method: format!(
                    "CPU 1's emulated instructions over the kernel's {samples} timed samples / {samples} (its answer \
                     and its idle loop's wake); CPU 0's, spin loop included, {:.1} per sample",
                    (e.1 - s.1) as f64 / n
                ),
            }
        }
        _ => PerOpInsns {
            name,
            insns_per_op: None,
            ops: 0,
            method: "the kernel marked no timed samples, or KVM gave no counts for both vCPUs".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_lines_give_the_figures() {
        let t = "kernel: cpu 1 online (apic id 1) after 10 us\r\n\
                 kernel: ipi round trip to cpu 1: median 18790 cycles, min 18090, p99 92302, mean 20000, n 200\r\n\
                 kernel: tlb shootdown to cpu 1 (one page): median 88000 cycles, min 80000, p99 190000, mean 91000, n 200\r\n";
        let s = sampled(t, 0);
        assert_eq!((s.samples, s.stats.0, s.stats.1, s.stats.2, s.stats.3), (200, 18090, 18790, 92302, 20000));
        assert_eq!(s.unresolved, None);
        let s = sampled(t, 1);
        assert_eq!((s.samples, s.stats.0, s.stats.1, s.stats.2, s.stats.3), (200, 80000, 88000, 190000, 91000));
    }

    #[test]
    fn without_the_line_the_row_says_why() {
        let lost = "kernel: cpu 1 online (apic id 1) after 10 us\nkernel: ipi to cpu 1 got no answer in time\n";
        assert!(sampled(lost, 0).unresolved.unwrap().contains("did not answer"));
        let lost =
            "kernel: cpu 1 online (apic id 1) after 10 us\nkernel: tlb shootdown to cpu 1 got no answer in time\n";
        assert!(sampled(lost, 1).unresolved.unwrap().contains("did not answer"));
        let alone = "kernel: cpu 1 did not start\n";
        assert_eq!(sampled(alone, 1).unresolved.as_deref(), Some("no second processor came online"));
        assert!(sampled("kernel: ipi round trip to cpu 1: median x cycles", 0).unresolved.is_some());
    }
}
