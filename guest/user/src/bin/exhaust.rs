//! Exhausts a kernel resource and reports the error it gets: `exhaust procs|frames|stack`.
//!
//! - `procs`: spawns `exhaust hold` until `spawn` fails; the process table is full: `-EAGAIN`.
//! - `frames`: spawns `fresh dirty` (1.5 MiB each, filled with a pattern) until `spawn` fails
//!   (`-ENOMEM` if memory ran out first, `-EAGAIN` if the table filled first: their zero-filled
//!   pages are mapped only when touched). Run it with `--mem 16` (and with `fresh check` so that
//!   the initrd holds `fresh`): the children that touch a page when no frame is left are killed
//!   with #PF. It `wait`s until every one has ended (exited or killed, however long filling
//!   its memory took), then spawns `fresh check` twice: they get the very frames the others
//!   dirtied and check that every byte is zero.
//! - `stack`: recurses until the stack runs into the unmapped guard page below it; the kernel
//!   kills it with #PF.
//!
//! The children of `procs` and `frames` live until a deadline (uptime + 3 s) at least, so they
//! are all alive when the table or the memory runs out.
#![no_std]
#![no_main]

use lde_abi::syscall::{EAGAIN, ECHILD, ENOMEM};
use lde_abi::user::USER_STACK_GUARD;
use lde_user::{format_into, println, sleep_ms, spawn, uptime_ms, wait, Args};

/// How long the children keep their slot and memory.
const HOLD_MS: u64 = 3000;
/// More spawns than can succeed (16 process slots): a bound in case children end too early.
const MAX_SPAWNS: u32 = 64;

/// Spawns `program dirty|hold UNTIL` until it fails; returns how many started and the error.
fn spawn_until_failure(program: &str, until: u64) -> (u32, i64) {
    let mut buf = [0u8; 48];
    let spec = format_into(&mut buf, format_args!("{program} {until}"));
    for started in 0..MAX_SPAWNS {
        let r = spawn(spec);
        if r <= 0 {
            return (started, r);
        }
    }
    (MAX_SPAWNS, 0)
}

fn sleep_until(until: u64) {
    let now = uptime_ms() as u64;
    if until > now {
        sleep_ms(until - now);
    }
}

/// One stack frame of 1 KiB, touched, per level, until `limit` (never reached: the stack is
/// 64 KiB).
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return 0;
    }
    let frame = [depth as u8; 1024];
    let frame = core::hint::black_box(frame);
    recurse(depth + 1, limit) + u64::from(frame[depth as usize % 1024])
}

fn main(args: Args) -> i32 {
    let until = uptime_ms() as u64 + HOLD_MS;
    match args.get(1) {
        Some("hold") => {
            sleep_until(args.number(2, 0).unwrap_or(0));
            0
        }
        Some("procs") => {
            let (started, err) = spawn_until_failure("exhaust hold", until);
            println!("exhaust: procs: {started} started, then spawn returned {err}");
            i32::from(err != -EAGAIN)
        }
        Some("frames") => {
            let (started, err) = spawn_until_failure("fresh dirty", until);
            println!("exhaust: frames: {started} started, then spawn returned {err}");
            // Every frame was in use; once the dirty processes have ended, theirs are the only
            // free ones.
            let mut ended = 0;
            let last = loop {
                match wait() {
                    pid if pid > 0 => ended += 1,
                    e => break e,
                }
            };
            println!("exhaust: frames: {ended} ended, then wait returned {last}");
            let checks = (0..2).filter(|_| spawn("fresh check") > 0).count();
            println!("exhaust: frames: {checks} checkers started");
            i32::from(!(err == -ENOMEM || err == -EAGAIN) || ended != started || last != -ECHILD || checks != 2)
        }
        Some("stack") => {
            println!("exhaust: stack: recursing towards the guard page at {USER_STACK_GUARD:#x}");
            let r = recurse(0, core::hint::black_box(u64::MAX));
            println!("exhaust: stack: the recursion returned {r}");
            1
        }
        _ => {
            println!("usage: exhaust procs|frames|stack");
            2
        }
    }
}

lde_user::entry!(main);
