//! The rows of a boot with two processors (only with `lde bench --cpus 2` or more): lde boots the
//! kernel with two vCPUs (and so `lde.cpus=2`); the kernel's processor 0 times, at boot, fixed
//! IPIs to processor 1 and their answers (`ipi-roundtrip`), then one-page TLB shootdowns to it
//! (`tlb-shootdown`: the IPI, `invlpg` there, the answer; guest/kernel/src/ipi_roundtrip.rs) and
//! prints one line for each, which this file reads.

use std::sync::Mutex;

use super::measure::Boot;
use super::{BenchConfig, Error, Sampled, QUIET_TIMER_HZ};

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

/// Boots `hello` on two vCPUs and reads both rows, with its progress line (row `done` of
/// `rows`); also the TSC rate of that run.
pub(super) fn measure(
    config: &BenchConfig,
    rows: usize,
    done: &Mutex<usize>,
) -> Result<([Sampled; 2], Option<u32>), Error> {
    {
        let mut done = done.lock().expect("progress lock poisoned");
        *done += 1;
        if !config.quiet {
            eprintln!("lde: bench [{}/{}] ipi-roundtrip, tlb-shootdown (cpu 0 -> cpu 1, at boot)", *done, rows);
        }
    }
    let programs = crate::initrd::prepare(&["hello".to_string()], Vec::new())?;
    let boot = Boot { cpus: CPUS, ..Boot::quiet(programs, QUIET_TIMER_HZ) };
    let (run, transcript) = boot.run(config)?;
    Ok(([sampled(&transcript, 0), sampled(&transcript, 1)], run.tsc_khz))
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
