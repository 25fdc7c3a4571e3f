//! The IPI round trip, as kvm-unit-tests' `x86/vmexit.c` `ipi` test measures it: processor 0
//! sends processor 1 a fixed IPI on `IPI_VECTOR` and spins until processor 1's stub
//! (arch/x86_64/ipi.rs) has counted it, timing each round trip with the TSC; then a one-page TLB
//! shootdown the same way (shootdown.rs: an IPI, `invlpg` on processor 1, its answer). Runs once
//! at boot, interrupts off, only when `lde.cpus` started processor 1; prints one line each that
//! `lde bench` reads (its `ipi-roundtrip` and `tlb-shootdown` rows).

use crate::arch::cpu::{self, rdtsc};
use crate::arch::{ipi, lapic};
use crate::{println, shootdown, time};

/// Round trips timed, after [`WARMUPS`] untimed ones.
const SAMPLES: usize = 200;
const WARMUPS: usize = 10;
/// How long one answer may take before the measurement gives up: a lost IPI must not hang the
/// boot (a round trip takes ~0.1 ms where ring 0 is emulated).
const ANSWER_TIMEOUT_MS: u64 = 50;

/// Measures the round trip to processor 1, then the one-page shootdown, and prints both.
#[inline(never)]
pub fn measure() {
    let timeout = time::ms_to_tsc(ANSWER_TIMEOUT_MS);
    timed("ipi round trip to cpu 1", "ipi to cpu 1", || round_trip(timeout));
    // The page a shootdown asks processor 1 to invalidate: any mapped page does.
    static PAGE: u8 = 0;
    timed("tlb shootdown to cpu 1 (one page)", "tlb shootdown to cpu 1", || {
        shootdown::one_page(1, core::ptr::addr_of!(PAGE) as u64)
    });
}

/// Times `once` after [`WARMUPS`] untimed rounds and prints `kernel: WHAT: median C cycles, min M,
/// p99 P, mean A, n N`, or that `who` got no answer.
fn timed(what: &str, who: &str, mut once: impl FnMut() -> Option<u64>) {
    let mut samples = [0u64; SAMPLES];
    for i in 0..WARMUPS + SAMPLES {
        if i == WARMUPS {
            cpu::milestone(lde_abi::ports::MILESTONE_TIMED_START);
        }
        let Some(cycles) = once() else {
            println!("kernel: {who} got no answer in time: nothing measured");
            return;
        };
        if let Some(slot) = i.checked_sub(WARMUPS) {
            samples[slot] = cycles;
        }
    }
    cpu::milestone(lde_abi::ports::MILESTONE_TIMED_END);
    samples.sort_unstable();
    let (min, median, p99) = (samples[0], samples[SAMPLES / 2], samples[SAMPLES * 99 / 100]);
    let mean = samples.iter().sum::<u64>() / SAMPLES as u64;
    println!("kernel: {what}: median {median} cycles, min {min}, p99 {p99}, mean {mean}, n {SAMPLES}");
}

/// One IPI and its answer, in TSC cycles; `None` if no answer came within `timeout` cycles.
fn round_trip(timeout: u64) -> Option<u64> {
    let before = ipi::pongs();
    let start = rdtsc();
    lapic::send_to(1, ipi::IPI_VECTOR);
    loop {
        let now = rdtsc();
        if ipi::pongs() != before {
            return Some(now.saturating_sub(start));
        }
        if now.saturating_sub(start) > timeout {
            return None;
        }
        core::hint::spin_loop();
    }
}
