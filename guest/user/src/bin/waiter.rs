//! Starts children and waits for each to end: `waiter [SPEC…]` (default: three of its own, one sleeping 100 ms, one exiting, one killed by #UD).
//!
//! First `wait` with no child, which must answer `-ECHILD` at once; then one `spawn` per SPEC
//! (commas in it become spaces: `sleeper,1,100` starts `sleeper 1 100`; the initrd must hold
//! the program) and `wait` until `-ECHILD`, printing each pid it gets (`waiter: pid P ended`);
//! then `wait` once more through `int 0x80`, which must answer `-ECHILD` again. Exits 1
//! unless every child it started was reported exactly once and no other pid was. The last line:
//! `waiter: S started, R reported, then -10, again -10, W wrong`.
//!
//! Its own children: `waiter sleep MS` sleeps and exits 0, `waiter exit` exits 0, `waiter ud2`
//! executes `ud2` and is killed.
#![no_std]
#![no_main]

use lde_abi::syscall::ECHILD;
use lde_user::{nr, println, sleep_ms, spawn, wait, Args, Door};

/// More children than the process table can hold at once.
const MAX_CHILDREN: usize = 16;
/// What it starts when given no SPEC: the first spawned ends last.
const DEFAULTS: [&str; 3] = ["waiter sleep 100", "waiter exit", "waiter ud2"];

/// Spawns `spec` with its commas turned into spaces.
fn spawn_spec(spec: &str) -> i64 {
    let mut buf = [0u8; 64];
    let text = &mut buf[..spec.len().min(64)];
    text.copy_from_slice(&spec.as_bytes()[..text.len()]);
    text.iter_mut().filter(|b| **b == b',').for_each(|b| *b = b' ');
    let pid = spawn(core::str::from_utf8(text).unwrap_or("?"));
    println!("waiter: spawned {spec}: {pid}");
    pid
}

fn main(args: Args) -> i32 {
    match args.get(1) {
        Some("sleep") => {
            sleep_ms(args.number(2, 100).unwrap_or(100));
            return 0;
        }
        Some("exit") => return 0,
        Some("ud2") => {
            // SAFETY: raises #UD; the kernel kills this process, so nothing after it runs.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
            return 1;
        }
        _ => {}
    }
    let mut wrong = 0;
    let first = wait();
    println!("waiter: no child yet: wait returned {first}");
    wrong += u32::from(first != -ECHILD);
    let spec_at = |i: usize| if args.len() > 1 { args.get(i + 1) } else { DEFAULTS.get(i).copied() };
    let mut started = [0i64; MAX_CHILDREN];
    let mut n = 0;
    for spec in (0..MAX_CHILDREN).map_while(spec_at) {
        match spawn_spec(spec) {
            pid if pid > 0 => {
                started[n] = pid;
                n += 1;
            }
            _ => wrong += 1,
        }
    }
    let mut reported = 0;
    let last = loop {
        let pid = wait();
        if pid <= 0 {
            break pid;
        }
        println!("waiter: pid {pid} ended");
        reported += 1;
        match started[..n].iter_mut().find(|p| **p == pid) {
            Some(p) => *p = 0, // reported: a second report of it finds no match
            None => wrong += 1,
        }
    };
    let again = Door::Int80.call(nr::WAIT, [0; 6]);
    let missed = started[..n].iter().filter(|&&p| p != 0).count();
    wrong += u32::from(last != -ECHILD) + u32::from(again != -ECHILD) + missed as u32;
    println!("waiter: {n} started, {reported} reported, then {last}, again {again}, {wrong} wrong");
    i32::from(wrong != 0)
}

lde_user::entry!(main);
