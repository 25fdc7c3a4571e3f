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

// The program's parts, in bench/ beside it (a file directly in src/bin would be a program).
#[path = "bench/loops.rs"]
mod loops;
#[path = "bench/measure.rs"]
mod measure;
#[path = "bench/report.rs"]
mod report;

use lde_user::{disk_info, disk_read, nr, println, spawn, tsc_hz, yield_now, Args, Door};

use loops::{
    bench_bp_loop, bench_bp_resume, bench_cpuid_loop, bench_int80_loop, bench_out_fault, bench_out_loop,
    bench_out_resume, bench_pf_fault, bench_pf_resume, bench_syscall_loop, bench_ud_fault, bench_ud_loop,
    bench_ud_resume, bench_yield_loop, label, run_loop, run_pf_loop, UNMAPPED,
};
use measure::{measure, measure_ticks, samples, BUDGET_MS};
use report::report;

/// A measurement: its name, by a part of which the program's arguments select it, and what runs
/// it.
struct Measurement {
    name: &'static str,
    run: fn(&str),
}

/// Every measurement, in the order they run.
const MEASUREMENTS: [Measurement; 11] = [
    Measurement { name: "syscall-null", run: |name| plain(name, bench_syscall_loop) },
    Measurement { name: "int80-null", run: |name| plain(name, bench_int80_loop) },
    Measurement { name: "exception-ud", run: exception_ud },
    Measurement { name: "exception-bp", run: exception_bp },
    Measurement { name: "exception-pf", run: exception_pf },
    Measurement { name: "timer-tick", run: |name| report(name, &measure_ticks(2000), 0) },
    Measurement { name: "yield-self", run: |name| plain(name, bench_yield_loop) },
    Measurement { name: "switch-cr3", run: switch_cr3 },
    Measurement { name: "cpuid", run: |name| plain(name, bench_cpuid_loop) },
    Measurement { name: "port-write", run: port_write },
    Measurement { name: "disk-read-4k", run: disk_read_4k },
];

fn main(args: Args) -> i32 {
    if args.get(1) == Some("partner") {
        partner(args.number(2, 0).unwrap_or(0));
        return 0;
    }
    if tsc_hz() == 0 {
        println!("bench: the kernel did not pass the TSC rate");
        return 1;
    }
    for m in MEASUREMENTS {
        if wanted(&args, m.name) {
            (m.run)(m.name);
        }
    }
    println!("bench: done");
    0
}

/// Whether the command line asks for the measurement `name` (all of them when it names none).
fn wanted(args: &Args, name: &str) -> bool {
    args.len() <= 1 || (1..args.len()).any(|i| args.get(i).is_some_and(|f| name.contains(f)))
}

/// Measures one of the loops that do not fault.
fn plain(name: &str, op: unsafe extern "C" fn(u64)) {
    let a = measure(name, &mut |n| run_loop(op, n));
    report(name, &a, 0);
}

/// Measures a loop whose operation faults at `fault`, with the kernel's fixup armed to resume it
/// at `resume`, and reports how many fixups the kernel made meanwhile.
fn faulting(name: &str, fault: u64, resume: u64, op: &mut dyn FnMut(u64)) {
    let before = fixup(fault, resume);
    let a = measure(name, op);
    let after = fixup(0, 0);
    report(name, &a, after - before);
}

/// `ud2`, resumed after by the fixup.
fn exception_ud(name: &str) {
    let (fault, resume) = (label(&raw const bench_ud_fault), label(&raw const bench_ud_resume));
    faulting(name, fault, resume, &mut |n| run_loop(bench_ud_loop, n));
}

/// `int3`, a trap: the RIP it reports is already the resume label.
fn exception_bp(name: &str) {
    let resume = label(&raw const bench_bp_resume);
    faulting(name, resume, resume, &mut |n| run_loop(bench_bp_loop, n));
}

/// A load from an unmapped page, resumed after by the fixup.
fn exception_pf(name: &str) {
    let (fault, resume) = (label(&raw const bench_pf_fault), label(&raw const bench_pf_resume));
    faulting(name, fault, resume, &mut |n| run_pf_loop(n, UNMAPPED));
}

/// `out` to the bench port. If ring 3 may not use the port, each out faults: fixed up and
/// reported as such.
fn port_write(name: &str) {
    let (fault, resume) = (label(&raw const bench_out_fault), label(&raw const bench_out_resume));
    faulting(name, fault, resume, &mut |n| run_loop(bench_out_loop, n));
}

/// The buffer `disk-read-4k` reads into: one page, so that each read is one data descriptor.
#[repr(align(4096))]
struct Page([u8; 4096]);

static mut PAGE: Page = Page([0; 4096]);

/// One 4 KiB read of disk 0 (lde gives the bench guest a scratch disk for this row): from the
/// `disk_read` call through the request, the block, the device's DMA and interrupt, to running
/// again.
fn disk_read_4k(name: &str) {
    let page = &raw mut PAGE;
    // SAFETY: the program's one thread is the only user of PAGE.
    let buf = unsafe { &mut (*page).0 };
    if disk_info(0) < 8 || disk_read(0, 0, buf) != 8 {
        println!("bench: {name}: no disk 0 to read ({})", disk_info(0));
        return;
    }
    let a = measure(name, &mut |n| {
        for _ in 0..n {
            disk_read(0, 0, buf);
        }
    });
    report(name, &a, 0);
}

fn fixup(fault: u64, resume: u64) -> i64 {
    Door::Syscall.call(nr::FIXUP, [fault, resume, 0, 0, 0, 0])
}

/// Yield round trips with a partner process: two switches each.
fn switch_cr3(name: &str) {
    // A partner that yields back until a little after this measurement's budget.
    let end = lde_user::rdtsc() + tsc_hz() / 1000 * (BUDGET_MS * 3);
    let mut spec = [0u8; 64];
    let text = lde_user::format_into(&mut spec, format_args!("bench partner {end}"));
    if spawn(text) < 0 {
        println!("bench: cannot start the partner");
        return;
    }
    let a = measure(name, &mut |n| run_loop(bench_yield_loop, n));
    // One yield here is a round trip: two switches (and two yield calls).
    samples()[..a.n].iter_mut().for_each(|s| *s /= 2);
    report(name, &a, 0);
    while lde_user::rdtsc() < end {
        yield_now();
    }
}

/// `bench partner END`: yields back until the TSC passes `end`.
fn partner(end: u64) {
    while lde_user::rdtsc() < end {
        yield_now();
    }
}

lde_user::entry!(main);
