//! Measuring, in the manner the program's text describes (bench.rs): loops sized by elapsed
//! cycles, the empty loop taken off, samples within a time budget; and the timer's gap method.

use core::arch::asm;

use lde_user::{println, tsc_hz};

use super::loops::{bench_empty_loop, run_loop};

/// One sample should span at least this many cycles (the median of SIZING_RUNS timings: on
/// QEMU TCG the first run after other code costs ~20,000 cycles more and stalls of 200,000 and
/// more are common, so a single timing sized the loop at random).
const SAMPLE_CYCLES: u64 = 200_000;
/// Timings whose median sizes the loop.
const SIZING_RUNS: usize = 5;
/// Timings of the empty loop per attempt, after its warm-up.
const EMPTY_RUNS: usize = 16;
/// Attempts at resolving a measurement, each with 4 times the operations per sample.
const ATTEMPTS: u32 = 3;
/// Most samples per measurement.
const MAX_SAMPLES: usize = 1000;
/// Most operations per sample.
const MAX_K: u64 = 1 << 16;
/// Time budget of a measurement's first attempt, in milliseconds (each later attempt: half).
pub const BUDGET_MS: u64 = 1500;

fn tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence orders the rdtsc after earlier instructions; both only read state.
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The samples of the measurement under way (in BSS: a stack this big would not fit).
struct Samples(core::cell::UnsafeCell<[u64; MAX_SAMPLES]>);

// SAFETY: a process is single-threaded; `samples()` is the only way in.
unsafe impl Sync for Samples {}

static SAMPLES: Samples = Samples(core::cell::UnsafeCell::new([0; MAX_SAMPLES]));

pub fn samples() -> &'static mut [u64; MAX_SAMPLES] {
    // SAFETY: single-threaded, and every caller drops its reference before the next call.
    unsafe { &mut *SAMPLES.0.get() }
}

/// Cycles of `op(k)` once.
fn time(op: &mut dyn FnMut(u64), k: u64) -> u64 {
    let t0 = tsc();
    op(k);
    tsc() - t0
}

/// The median of `runs` (at most 16) timings of `op(k)`, and their minimum.
fn timings(op: &mut dyn FnMut(u64), k: u64, runs: usize) -> (u64, u64) {
    let mut t = [0u64; 16];
    let t = &mut t[..runs.clamp(1, 16)];
    t.iter_mut().for_each(|v| *v = time(op, k));
    t.sort_unstable();
    (t[t.len() / 2], t[0])
}

/// What one attempt at a measurement found (cycles per sample of `k` operations).
pub struct Attempt {
    pub k: u64,
    pub n: usize,
    /// The empty loop's fastest run, and its median less that.
    pub empty: u64,
    pub spread: u64,
    /// Samples not above the empty loop by at least a cycle per operation.
    pub below: usize,
    /// The median sample before the empty loop was taken off.
    pub raw_median: u64,
}

impl Attempt {
    /// Why the difference from the empty loop is not a cost, if it is not: `below`, some samples
    /// were not above the empty loop; `noise`, the median is not above it by more than twice its
    /// spread.
    pub fn unresolved(&self) -> Option<&'static str> {
        if self.n == 0 || self.below > 0 {
            Some("below")
        } else if self.raw_median.saturating_sub(self.empty) <= 2 * self.spread {
            Some("noise")
        } else {
            None
        }
    }
}
/// Measures `op` (which runs its operation k times) as the program's text (bench.rs) describes.
pub fn measure(name: &str, op: &mut dyn FnMut(u64)) -> Attempt {
    println!("bench: measuring {name}");
    let mut k = 1;
    while k < MAX_K && timings(op, k, SIZING_RUNS).0 < SAMPLE_CYCLES {
        k *= 2;
    }
    let mut budget_ms = BUDGET_MS;
    let mut attempt = 1;
    loop {
        let a = sample(op, k, budget_ms);
        if a.unresolved().is_none() || attempt == ATTEMPTS || k == MAX_K {
            return a;
        }
        (k, budget_ms, attempt) = ((k * 4).min(MAX_K), BUDGET_MS / 2, attempt + 1);
    }
}

/// One attempt: the empty loop, then the samples of `op(k)` within `budget_ms`, each less the
/// empty loop's fastest run, per operation.
fn sample(op: &mut dyn FnMut(u64), k: u64, budget_ms: u64) -> Attempt {
    // The empty loop in a block of its own after its warm-up: the first runs after other code
    // cost far more (~20,000 cycles on QEMU TCG, against ~100 for 8 iterations after), and
    // that cost taken off every sample once made a null system call come out at 0.
    let empty_loop = &mut |n| run_loop(bench_empty_loop, n);
    for _ in 0..3 {
        empty_loop(k);
    }
    let (empty_median, empty) = timings(empty_loop, k, EMPTY_RUNS);
    for _ in 0..3 {
        op(k);
    }
    let deadline = tsc() + tsc_hz() / 1000 * budget_ms;
    let mut n = 0;
    while n < MAX_SAMPLES && tsc() < deadline {
        samples()[n] = time(op, k);
        n += 1;
    }
    let raw = &mut samples()[..n];
    raw.sort_unstable();
    let raw_median = raw.get(n / 2).copied().unwrap_or(0);
    let mut below = 0;
    for s in raw.iter_mut() {
        *s = s.saturating_sub(empty) / k;
        below += usize::from(*s == 0);
    }
    Attempt { k, n, empty, spread: empty_median - empty, below, raw_median }
}
/// The gap method: a tight rdtsc loop notes each gap far above its usual iteration; with the
/// timer on, most gaps are timer interrupts (tick delivery, the kernel's handler, the return).
fn timer_gaps(ms: u64) -> usize {
    println!("bench: measuring timer-tick");
    let mut base = u64::MAX;
    let mut prev = tsc();
    for _ in 0..10_000 {
        let now = tsc();
        base = base.min(now - prev);
        prev = now;
    }
    let threshold = (base * 50).max(2_000);
    let end = tsc() + tsc_hz() / 1000 * ms;
    let mut n = 0;
    prev = tsc();
    while n < MAX_SAMPLES {
        let now = tsc();
        let gap = now - prev;
        if gap > threshold {
            samples()[n] = gap - base;
            n += 1;
        }
        if now >= end {
            break;
        }
        prev = now;
    }
    n
}

/// Measures the timer tick by the gap method over `ms` milliseconds. Each gap already has the
/// loop's own iteration taken off: no empty loop here.
pub fn measure_ticks(ms: u64) -> Attempt {
    let n = timer_gaps(ms);
    let gaps = &mut samples()[..n];
    gaps.sort_unstable();
    let below = gaps.iter().filter(|&&g| g == 0).count();
    let raw_median = gaps.get(n / 2).copied().unwrap_or(0);
    Attempt { k: 1, n, empty: 0, spread: 0, below, raw_median }
}
