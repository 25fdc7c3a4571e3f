//! Spins for MS milliseconds of guest time by rdtsc (default 1000; 0 = forever), never yielding and making no system call.
#![no_std]
#![no_main]

use lde_user::{ms_to_tsc, println, rdtsc, Args};

fn main(args: Args) -> i32 {
    let Some(ms) = args.number(1, 1000) else {
        println!("usage: spin [MS]");
        return 2;
    };
    if ms == 0 {
        println!("spin: spinning forever without a system call");
    } else {
        println!("spin: spinning for {ms} ms without a system call");
    }
    let end = if ms == 0 { u64::MAX } else { rdtsc() + ms_to_tsc(ms) };
    while rdtsc() < end {
        core::hint::spin_loop();
    }
    println!("spin: done");
    0
}

lde_user::entry!(main);
