//! Counts as fast as it can for MS milliseconds of guest time (default 1000) and prints the count.
#![no_std]
#![no_main]

use lde_user::{ms_to_tsc, println, rdtsc, Args};

fn main(args: Args) -> i32 {
    let Some(ms) = args.number(1, 1000) else {
        println!("usage: counter [MS]");
        return 2;
    };
    let end = rdtsc() + ms_to_tsc(ms);
    let mut count: u64 = 0;
    loop {
        // Look at the clock every 4096 increments: the count measures CPU time received.
        for _ in 0..4096 {
            count = core::hint::black_box(count + 1);
        }
        if rdtsc() >= end {
            break;
        }
    }
    println!("counter: pid {} counted {count} in {ms} ms", lde_user::getpid());
    0
}

lde_user::entry!(main);
