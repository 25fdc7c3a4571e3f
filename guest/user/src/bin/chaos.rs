//! Runs random code in ring 3: `chaos N [SEED]` starts N processes, each jumping into random bytes with random registers, flags and stack.
//!
//! `chaos run SEED` is one such process: from SEED it picks an entry point in a 64 KiB region
//! of random bytes (written by build.rs with a fixed seed and linked executable; one time in 8
//! any address instead: kernel, non-canonical, misaligned, data), random selectors for DS, ES,
//! FS and GS (one time in 4), random values for every general register (small numbers, user,
//! kernel and non-canonical addresses), random RFLAGS bits (DF, AC, NT, the arithmetic flags,
//! now and then TF and IOPL) and a random stack pointer, loads them all and jumps. Whatever
//! that code does — system calls with those registers, faults, privileged instructions,
//! endless loops (ended by the runaway watchdog, `lde.runaway_ms`) — the process must end with
//! its own `exit` or `killed` line and the kernel must carry on.
//! The same N and SEED run the same processes: a failure is reproducible.
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use lde_abi::syscall::EAGAIN;
use lde_abi::user::{USER_BASE, USER_END, USER_STACK_TOP};
use lde_user::{format_into, println, sleep_ms, spawn, Args, Rng};

const CHAOS_TEXT_SIZE: usize = 64 * 1024;

/// The random bytes, in the program's executable segment.
#[link_section = ".text.chaos"]
#[used]
static CHAOS_TEXT: [u8; CHAOS_TEXT_SIZE] = *include_bytes!(concat!(env!("OUT_DIR"), "/chaos.bin"));

/// Where the last jump goes (read by the jump itself, when no register is free).
static TARGET: AtomicU64 = AtomicU64::new(0);

/// A register value a hostile program might choose.
fn value(rng: &mut Rng) -> u64 {
    let interesting = [
        0,
        1,
        u64::MAX,
        0x10_0000,
        0xfee0_0000,
        0x0000_8000_0000_0000,
        0xffff_8000_0000_0000,
        0xffff_ffff_8000_0000,
        USER_BASE,
        USER_END - 8,
        USER_STACK_TOP - 64,
    ];
    match rng.next_u64() % 5 {
        0 => rng.pick(&interesting),
        1 => rng.next_u64(),
        2 | 3 => rng.next_u64() % 16,
        _ => USER_BASE + rng.next_u64() % 0x2_0000,
    }
}

/// Random RFLAGS: the arithmetic flags, DF, AC and NT at random; TF one time in 16; IOPL 3 one
/// time in 8 (ring 3's popf ignores it); IF stays set (popf cannot clear it in ring 3 either).
fn flags(rng: &mut Rng) -> u64 {
    const ARITH: u64 = 0x8d5; // CF PF AF ZF SF OF
    const DF: u64 = 1 << 10;
    const AC: u64 = 1 << 18;
    const NT: u64 = 1 << 14;
    const TF: u64 = 1 << 8;
    const IOPL3: u64 = 3 << 12;
    let r = rng.next_u64();
    let mut f = 0x202 | (r & (ARITH | DF | AC | NT));
    if r >> 40 & 15 == 0 {
        f |= TF;
    }
    if r >> 44 & 7 == 0 {
        f |= IOPL3;
    }
    f
}

/// A selector for DS, ES, FS or GS: null ones (any RPL), the user's data and code selectors
/// (all loadable: code segments are readable), or any 16 bits (kernel, TSS, past the GDT,
/// wrong RPL: #GP at the load).
fn selector(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 4 {
        0 => rng.next_u64() % 4,
        1 | 2 => rng.pick(&[0x2b, 0x23, 0x33, 0x28, 0x10, 0x18, 0x38, 0x3b]),
        _ => rng.next_u64() & 0xffff,
    }
}

/// Loads DS, ES, FS, GS (when `state[17]` is 1), every general register, RFLAGS and RSP from
/// `state` and jumps to [`TARGET`].
///
/// `state`: rax, rbx, rcx, rdx, rsi, rdi, rbp, r8–r15, rsp, rflags, load selectors?, ds, es,
/// fs, gs.
fn jump(state: &[u64; 22]) -> ! {
    // SAFETY: deliberately gives up every invariant of this program: what runs next is random
    // code with random registers, and the kernel must cope with whatever it does. Nothing of
    // this program runs again.
    unsafe {
        asm!(
            "cmp qword ptr [rax + 136], 0",
            "je 2f",
            "mov ds, [rax + 144]",
            "mov es, [rax + 152]",
            "mov fs, [rax + 160]",
            "mov gs, [rax + 168]",
            "2:",
            "push qword ptr [rax + 128]",
            "popfq",
            "mov rbx, [rax + 8]",
            "mov rcx, [rax + 16]",
            "mov rdx, [rax + 24]",
            "mov rsi, [rax + 32]",
            "mov rdi, [rax + 40]",
            "mov rbp, [rax + 48]",
            "mov r8, [rax + 56]",
            "mov r9, [rax + 64]",
            "mov r10, [rax + 72]",
            "mov r11, [rax + 80]",
            "mov r12, [rax + 88]",
            "mov r13, [rax + 96]",
            "mov r14, [rax + 104]",
            "mov r15, [rax + 112]",
            "mov rsp, [rax + 120]",
            "mov rax, [rax]",
            "jmp qword ptr [rip + {target}]",
            target = sym TARGET,
            in("rax") state.as_ptr(),
            options(noreturn),
        )
    }
}

/// One process of random code.
fn run(seed: u64) -> ! {
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let offset = rng.next_u64() % CHAOS_TEXT_SIZE as u64;
    // One time in 8 the jump goes anywhere: kernel, non-canonical, data, unmapped addresses.
    let target = if rng.next_u64().is_multiple_of(8) { value(&mut rng) } else { CHAOS_TEXT.as_ptr() as u64 + offset };
    TARGET.store(target, Ordering::Relaxed);
    let mut state = [0u64; 22];
    for r in state.iter_mut().take(15) {
        *r = value(&mut rng);
    }
    let stack_here = &state as *const _ as u64;
    state[15] = match rng.next_u64() % 4 {
        0 | 1 => stack_here - rng.next_u64() % 2048,
        2 => stack_here - rng.next_u64() % 2048 - 1, // misaligned
        _ => value(&mut rng),
    };
    state[16] = flags(&mut rng);
    // One time in 4 the data segment registers get random selectors first.
    state[17] = u64::from(rng.next_u64().is_multiple_of(4));
    for s in &mut state[18..] {
        *s = selector(&mut rng);
    }
    jump(&state)
}

fn main(args: Args) -> i32 {
    if args.get(1) == Some("run") {
        match args.number(2, u64::MAX) {
            Some(seed) if seed != u64::MAX => run(seed),
            _ => {
                println!("usage: chaos run SEED");
                return 2;
            }
        }
    }
    let (Some(n), Some(seed)) = (args.number(1, u64::MAX), args.number(2, 1)) else {
        println!("usage: chaos N [SEED] | chaos run SEED");
        return 2;
    };
    if n == u64::MAX {
        println!("usage: chaos N [SEED] | chaos run SEED");
        return 2;
    }
    let mut seeds = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut buf = [0u8; 48];
    for _ in 0..n {
        let spec = format_into(&mut buf, format_args!("chaos run {}", seeds.next_u64() >> 1));
        loop {
            match spawn(spec) {
                pid if pid > 0 => break,
                e if e == -EAGAIN => {
                    // The process table is full: let the children run.
                    sleep_ms(1);
                }
                e => {
                    println!("chaos: spawn failed with {e}");
                    return 1;
                }
            }
        }
    }
    println!("chaos: started {n} processes from seed {seed}");
    0
}

lde_user::entry!(main);
