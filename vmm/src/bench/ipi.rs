//! The `ipi-roundtrip` row (only with `lde bench --cpus 2` or more): lde boots the kernel with
//! two vCPUs (and so `lde.cpus=2`); the kernel's processor 0 times fixed IPIs to processor 1
//! and their answers at boot (guest/kernel/src/ipi_roundtrip.rs) and prints one line, which
//! this file reads.

use std::sync::Mutex;

use super::measure::Boot;
use super::{BenchConfig, Error, Sampled, QUIET_TIMER_HZ};

/// The row's name.
pub const NAME: &str = "ipi-roundtrip";
/// What the row is.
pub const DESCRIPTION: &str = "fixed IPI from CPU 0 to CPU 1 and its answer, timed by the kernel at boot (--cpus 2)";
/// vCPUs the row's boot has.
const CPUS: u8 = 2;

/// The figures of the kernel's line: (median, min, p99, mean, n).
fn parse(transcript: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let line =
        transcript.lines().find_map(|l| l.trim_end().strip_prefix("kernel: ipi round trip to cpu 1: median "))?;
    let (median, rest) = line.split_once(" cycles, min ")?;
    let (min, rest) = rest.split_once(", p99 ")?;
    let (p99, rest) = rest.split_once(", mean ")?;
    let (mean, n) = rest.split_once(", n ")?;
    let number = |s: &str| s.trim().parse::<u64>().ok();
    Some((number(median)?, number(min)?, number(p99)?, number(mean)?, number(n)?))
}

/// Why the transcript holds no round trip.
fn why_none(transcript: &str) -> String {
    if transcript.contains("ipi to cpu 1 got no answer") {
        "cpu 1 did not answer an IPI within the kernel's deadline".to_string()
    } else if transcript.contains("kernel: cpu 1 online") {
        "the kernel printed no round trip".to_string()
    } else {
        "no second processor came online".to_string()
    }
}

/// The row from a boot's transcript; unresolved (with the reason) if the kernel measured nothing.
fn sampled(transcript: &str) -> Sampled {
    let path = "fixed IPI CPU 0 -> CPU 1 and back, measured by the guest's TSC".to_string();
    match parse(transcript) {
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

/// Boots `hello` on two vCPUs and reads the round trip, with its progress line (row `done` of
/// `rows`); also the TSC rate of that run.
pub(super) fn measure(config: &BenchConfig, rows: usize, done: &Mutex<usize>) -> Result<(Sampled, Option<u32>), Error> {
    {
        let mut done = done.lock().expect("progress lock poisoned");
        *done += 1;
        if !config.quiet {
            eprintln!("lde: bench [{}/{}] {NAME} (cpu 0 -> cpu 1, at boot)", *done, rows);
        }
    }
    let programs = crate::initrd::prepare(&["hello".to_string()], Vec::new())?;
    let boot = Boot { cpus: CPUS, ..Boot::quiet(programs, QUIET_TIMER_HZ) };
    let (run, transcript) = boot.run(config)?;
    Ok((sampled(&transcript), run.tsc_khz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_line_gives_the_figures() {
        let t = "kernel: cpu 1 online (apic id 1) after 10 us\r\n\
                 kernel: ipi round trip to cpu 1: median 18790 cycles, min 18090, p99 92302, mean 20000, n 200\r\n";
        let s = sampled(t);
        assert_eq!((s.samples, s.stats.0, s.stats.1, s.stats.2, s.stats.3), (200, 18090, 18790, 92302, 20000));
        assert_eq!(s.unresolved, None);
    }

    #[test]
    fn without_the_line_the_row_says_why() {
        let lost = "kernel: cpu 1 online (apic id 1) after 10 us\nkernel: ipi to cpu 1 got no answer within 50 ms\n";
        assert!(sampled(lost).unresolved.unwrap().contains("did not answer"));
        let alone = "kernel: cpu 1 did not start\n";
        assert_eq!(sampled(alone).unresolved.as_deref(), Some("no second processor came online"));
        assert!(sampled("kernel: ipi round trip to cpu 1: median x cycles").unresolved.is_some());
    }
}
