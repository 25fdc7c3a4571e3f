//! Trap-cost microbenchmarks for `lde bench` (run that instead): system calls, exceptions, timer ticks, context switches, VM exits.
//!
//! Each measurement, in the manner of kvm-unit-tests' x86/vmexit.c: an asm loop of K operations
//! timed with lfence-fenced rdtsc, K doubled until the median of a few timings spans
//! SAMPLE_CYCLES, warm-up, the empty loop of K iterations timed in a block of its own after its
//! own warm-up, then up to MAX_SAMPLES samples within a time budget, each less the empty loop's
//! fastest run. A measurement is resolved when every sample is above the empty loop and the
//! median's difference exceeds twice the empty loop's spread; otherwise it is tried again with
//! 4 times K, and after ATTEMPTS it is reported unresolved (never as a cost of 0).
//! The timer is measured by the gap method: a tight rdtsc loop notes every gap far above
//! its usual iteration. Results are one line each: `bench result name=… n=… k=… min=… median=…
//! p99=… mean=… empty=… spread=… below=… fixups=… [unresolved=below|noise] hist=floor:count,…`
//! (`empty`, `spread`: the empty loop's fastest run and its median less that, cycles per sample
//! of K; `below`: samples not above the empty loop) with the bins of `lde_abi::histogram`.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

use lde_abi::histogram::bin_floor;
use lde_abi::user::USER_BASE;
use lde_user::{nr, println, spawn, tsc_hz, yield_now, Args, Door};

// Loop contract: rdi = iteration count (> 0), rsi = an address for the #PF loop; each loop runs
// its operation rdi times and returns. Registers clobbered: rax, rcx, rdx, r11 (and rdi, rsi);
// the cpuid loop saves rbx. Labels `*_fault`/`*_resume` are where an operation faults and where
// the kernel's fixup resumes it.
global_asm!(
    r#"
    .text
    .global bench_empty_loop
bench_empty_loop:
2:  dec rdi
    jnz 2b
    ret

    .global bench_syscall_loop
bench_syscall_loop:
2:  xor eax, eax
    syscall
    dec rdi
    jnz 2b
    ret

    .global bench_int80_loop
bench_int80_loop:
2:  xor eax, eax
    int 0x80
    dec rdi
    jnz 2b
    ret

    .global bench_yield_loop
bench_yield_loop:
2:  mov eax, 4
    syscall
    dec rdi
    jnz 2b
    ret

    .global bench_ud_loop
    .global bench_ud_fault
    .global bench_ud_resume
bench_ud_loop:
bench_ud_fault:
    ud2
bench_ud_resume:
    dec rdi
    jnz bench_ud_loop
    ret

    .global bench_bp_loop
    .global bench_bp_resume
bench_bp_loop:
    int3
bench_bp_resume:
    dec rdi
    jnz bench_bp_loop
    ret

    .global bench_pf_loop
    .global bench_pf_fault
    .global bench_pf_resume
bench_pf_loop:
bench_pf_fault:
    mov rax, [rsi]
bench_pf_resume:
    dec rdi
    jnz bench_pf_loop
    ret

    .global bench_cpuid_loop
bench_cpuid_loop:
    push rbx
2:  xor eax, eax
    xor ecx, ecx
    cpuid
    dec rdi
    jnz 2b
    pop rbx
    ret

    .global bench_out_loop
    .global bench_out_fault
    .global bench_out_resume
bench_out_loop:
bench_out_fault:
    out 0xf9, al
bench_out_resume:
    dec rdi
    jnz bench_out_loop
    ret
    "#
);

extern "C" {
    fn bench_empty_loop(n: u64);
    fn bench_syscall_loop(n: u64);
    fn bench_int80_loop(n: u64);
    fn bench_yield_loop(n: u64);
    fn bench_ud_loop(n: u64);
    fn bench_bp_loop(n: u64);
    fn bench_pf_loop(n: u64, addr: u64);
    fn bench_cpuid_loop(n: u64);
    fn bench_out_loop(n: u64);
    static bench_ud_fault: u8;
    static bench_ud_resume: u8;
    static bench_bp_resume: u8;
    static bench_pf_fault: u8;
    static bench_pf_resume: u8;
    static bench_out_fault: u8;
    static bench_out_resume: u8;
}

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
const BUDGET_MS: u64 = 1500;
/// An unmapped user address, for the #PF loop.
const UNMAPPED: u64 = USER_BASE + 0x4000_0000;

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

fn samples() -> &'static mut [u64; MAX_SAMPLES] {
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
struct Attempt {
    k: u64,
    n: usize,
    /// The empty loop's fastest run, and its median less that.
    empty: u64,
    spread: u64,
    /// Samples not above the empty loop by at least a cycle per operation.
    below: usize,
    /// The median sample before the empty loop was taken off.
    raw_median: u64,
}

impl Attempt {
    /// Why the difference from the empty loop is not a cost, if it is not: `below`, some samples
    /// were not above the empty loop; `noise`, the median is not above it by more than twice its
    /// spread.
    fn unresolved(&self) -> Option<&'static str> {
        if self.n == 0 || self.below > 0 {
            Some("below")
        } else if self.raw_median.saturating_sub(self.empty) <= 2 * self.spread {
            Some("noise")
        } else {
            None
        }
    }
}

fn report(name: &str, a: &Attempt, fixups: i64) {
    let n = a.n;
    let s = &mut samples()[..n];
    s.sort_unstable();
    if n == 0 {
        println!("bench result name={name} n=0 unresolved=below");
        return;
    }
    let mean = s.iter().sum::<u64>() / n as u64;
    let p = |q: usize| s[(n - 1) * q / 100];
    let mut line = lde_user::Printer::new(Door::Syscall);
    use core::fmt::Write;
    let _ = write!(
        line,
        "bench result name={name} n={n} k={} min={} median={} p99={} mean={mean} empty={} spread={} below={} fixups={fixups} ",
        a.k,
        s[0],
        p(50),
        p(99),
        a.empty,
        a.spread,
        a.below
    );
    if let Some(why) = a.unresolved() {
        let _ = write!(line, "unresolved={why} ");
    }
    let _ = write!(line, "hist=");
    // The samples are sorted: each bin's samples are next to each other.
    let mut i = 0;
    while i < n {
        let floor = bin_floor(s[i]);
        let count = s[i..].iter().take_while(|&&v| bin_floor(v) == floor).count();
        let _ = write!(line, "{}{floor}:{count}", if i == 0 { "" } else { "," });
        i += count;
    }
    let _ = writeln!(line);
    line.flush();
}

/// Measures `op` (which runs its operation k times) as described above.
fn measure(name: &str, op: &mut dyn FnMut(u64)) -> Attempt {
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

fn fixup(fault: u64, resume: u64) -> i64 {
    Door::Syscall.call(nr::FIXUP, [fault, resume, 0, 0, 0, 0])
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

/// Runs one of the asm loops above.
fn run_loop(f: unsafe extern "C" fn(u64), n: u64) {
    // SAFETY: the loops only execute their operation n times (see the contract above the
    // asm); the faulting ones run only with the kernel's fixup armed for their fault label.
    unsafe { f(n) }
}

/// Runs the #PF loop on `addr`.
fn run_pf_loop(n: u64, addr: u64) {
    // SAFETY: as in `run_loop`; `addr` is unmapped and the fixup resumes after the load.
    unsafe { bench_pf_loop(n, addr) }
}

fn addr(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

fn wanted(args: &Args, name: &str) -> bool {
    args.len() <= 1 || (1..args.len()).any(|i| args.get(i).is_some_and(|f| name.contains(f)))
}

#[allow(clippy::too_many_lines, reason = "every measurement's dispatch in one table-like match; not yet split")]
fn main(args: Args) -> i32 {
    if args.get(1) == Some("partner") {
        // Yields back until the TSC passes the deadline it was given.
        let end = args.number(2, 0).unwrap_or(0);
        while lde_user::rdtsc() < end {
            yield_now();
        }
        return 0;
    }
    if tsc_hz() == 0 {
        println!("bench: the kernel did not pass the TSC rate");
        return 1;
    }
    if wanted(&args, "syscall-null") {
        let a = measure("syscall-null", &mut |n| run_loop(bench_syscall_loop, n));
        report("syscall-null", &a, 0);
    }
    if wanted(&args, "int80-null") {
        let a = measure("int80-null", &mut |n| run_loop(bench_int80_loop, n));
        report("int80-null", &a, 0);
    }
    // SAFETY: taking the addresses of asm labels.
    let (ud, ud_r, bp_r, pf, pf_r, out, out_r) = unsafe {
        (
            addr(&bench_ud_fault),
            addr(&bench_ud_resume),
            addr(&bench_bp_resume),
            addr(&bench_pf_fault),
            addr(&bench_pf_resume),
            addr(&bench_out_fault),
            addr(&bench_out_resume),
        )
    };
    for (name, fault, resume) in [("exception-ud", ud, ud_r), ("exception-bp", bp_r, bp_r), ("exception-pf", pf, pf_r)]
    {
        if !wanted(&args, name) {
            continue;
        }
        let before = fixup(fault, resume);
        let a = match name {
            "exception-ud" => measure(name, &mut |n| run_loop(bench_ud_loop, n)),
            "exception-bp" => measure(name, &mut |n| run_loop(bench_bp_loop, n)),
            _ => measure(name, &mut |n| run_pf_loop(n, UNMAPPED)),
        };
        let after = fixup(0, 0);
        report(name, &a, after - before);
    }
    if wanted(&args, "timer-tick") {
        let n = timer_gaps(2000);
        // Each gap already has the loop's own iteration taken off: no empty loop here.
        let gaps = &mut samples()[..n];
        gaps.sort_unstable();
        let below = gaps.iter().filter(|&&g| g == 0).count();
        let raw_median = gaps.get(n / 2).copied().unwrap_or(0);
        report("timer-tick", &Attempt { k: 1, n, empty: 0, spread: 0, below, raw_median }, 0);
    }
    if wanted(&args, "yield-self") {
        let a = measure("yield-self", &mut |n| run_loop(bench_yield_loop, n));
        report("yield-self", &a, 0);
    }
    if wanted(&args, "switch-cr3") {
        // A partner that yields back until a little after this measurement's budget.
        let end = lde_user::rdtsc() + tsc_hz() / 1000 * (BUDGET_MS * 3);
        let mut spec = [0u8; 64];
        let text = lde_user::format_into(&mut spec, format_args!("bench partner {end}"));
        if spawn(text) < 0 {
            println!("bench: cannot start the partner");
        } else {
            let a = measure("switch-cr3", &mut |n| run_loop(bench_yield_loop, n));
            // One yield here is a round trip: two switches (and two yield calls).
            samples()[..a.n].iter_mut().for_each(|s| *s /= 2);
            report("switch-cr3", &a, 0);
            while lde_user::rdtsc() < end {
                yield_now();
            }
        }
    }
    if wanted(&args, "cpuid") {
        let a = measure("cpuid", &mut |n| run_loop(bench_cpuid_loop, n));
        report("cpuid", &a, 0);
    }
    if wanted(&args, "port-write") {
        // If ring 3 may not use the port, each out faults: fixed up and reported as such.
        let before = fixup(out, out_r);
        let a = measure("port-write", &mut |n| run_loop(bench_out_loop, n));
        let after = fixup(0, 0);
        report("port-write", &a, after - before);
    }
    println!("bench: done");
    0
}

lde_user::entry!(main);
