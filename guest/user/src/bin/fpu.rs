//! Keeps a pattern in every x87 and SSE register across preemptions and yields: `fpu PATTERN [ROUNDS]` exits 1 on a mismatch.
//!
//! First it checks that it started with a reset FPU (no register holds anything another
//! process left). Then it loads its pattern into st0–st7, xmm0–xmm15, the x87 control word and
//! MXCSR with `fxrstor64`, and for ROUNDS rounds (default 300) spins 1 ms of TSC time (the
//! timer preempts it there) and now and then yields, reads every register back with
//! `fxsave64` and compares. Two of these with different patterns prove that the kernel saves
//! and restores each process's FPU state; the kernel's `acct` line says how many times each
//! was preempted. The program's own code never touches these registers: user programs are
//! built for the soft-float `x86_64-unknown-none` target.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{ms_to_tsc, println, rdtsc, yield_now, Args};

/// The 512-byte FXSAVE image.
#[repr(C, align(16))]
struct FxArea([u8; 512]);

/// Byte offsets in the image (Intel SDM, FXSAVE in 64-bit mode).
const FCW: usize = 0;
const FTW: usize = 4;
const MXCSR: usize = 24;
const ST0: usize = 32;
const XMM0: usize = 160;
const XMM_END: usize = 416;

fn save(area: &mut FxArea) {
    // SAFETY: fxsave64 writes 512 bytes to a 16-byte aligned area, which this is.
    unsafe { asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack, preserves_flags)) };
}

fn restore(area: &FxArea) {
    // SAFETY: fxrstor64 reads 512 bytes from a 16-byte aligned area; MXCSR holds no reserved
    // bit (the only field that could make it fault).
    unsafe { asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack, preserves_flags)) };
}

/// The bytes that matter: control words, tag word, the 80 bits of each x87 register, every
/// xmm register.
fn same(a: &FxArea, b: &FxArea) -> bool {
    let x87 = (0..8).all(|i| a.0[ST0 + 16 * i..][..10] == b.0[ST0 + 16 * i..][..10]);
    a.0[FCW..FCW + 2] == b.0[FCW..FCW + 2]
        && a.0[FTW] == b.0[FTW]
        && a.0[MXCSR..MXCSR + 4] == b.0[MXCSR..MXCSR + 4]
        && x87
        && a.0[XMM0..XMM_END] == b.0[XMM0..XMM_END]
}

/// Whether `area` is the state of a reset FPU: default control words, every register zero.
fn is_reset(area: &FxArea) -> bool {
    let x87 = (0..8).all(|i| area.0[ST0 + 16 * i..][..10].iter().all(|&b| b == 0));
    area.0[FCW..FCW + 2] == [0x7f, 0x03]
        && area.0[MXCSR..MXCSR + 4] == [0x80, 0x1f, 0, 0]
        && x87
        && area.0[XMM0..XMM_END].iter().all(|&b| b == 0)
}

/// The image `pattern` names: its rounding modes in FCW and MXCSR, every x87 register valid
/// and filled, every xmm register filled, all from the pattern.
fn image(pattern: u64, base: &FxArea) -> FxArea {
    let mut area = FxArea(base.0);
    let rounding = (pattern & 3) as u16;
    area.0[FCW..FCW + 2].copy_from_slice(&(0x037f | rounding << 10).to_le_bytes());
    area.0[2..4].copy_from_slice(&[0, 0]); // FSW: no exception, TOP 0
    area.0[FTW] = 0xff; // every x87 register holds a value
    area.0[MXCSR..MXCSR + 4].copy_from_slice(&(0x1f80 | u32::from(rounding) << 13).to_le_bytes());
    let mut x = pattern.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut byte = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    for i in 0..8 {
        for b in &mut area.0[ST0 + 16 * i..][..10] {
            *b = byte();
        }
    }
    for b in &mut area.0[XMM0..XMM_END] {
        *b = byte();
    }
    area
}

/// Spins for `cycles` TSC cycles in integer code.
fn spin(cycles: u64) {
    let end = rdtsc() + cycles;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

fn main(args: Args) -> i32 {
    let (Some(pattern), Some(rounds)) = (args.number(1, 1), args.number(2, 300)) else {
        println!("usage: fpu PATTERN [ROUNDS]");
        return 2;
    };
    let mut seen = FxArea([0; 512]);
    save(&mut seen);
    let fresh = is_reset(&seen);
    let expected = image(pattern, &seen);
    restore(&expected);
    let mut wrong = 0;
    for round in 0..rounds {
        spin(ms_to_tsc(1));
        if round % 8 == 7 {
            yield_now();
        }
        save(&mut seen);
        if !same(&seen, &expected) {
            wrong += 1;
            restore(&expected);
        }
    }
    let start = if fresh { "reset" } else { "NOT reset" };
    println!("fpu: {pattern}: started {start}, {rounds} rounds, {wrong} wrong");
    i32::from(!fresh || wrong != 0)
}

lde_user::entry!(main);
