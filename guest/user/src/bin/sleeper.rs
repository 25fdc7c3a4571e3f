//! Sleeps N times for MS milliseconds (default 10 × 20) and reports how late each wake-up was; exits 1 if any came early.
#![no_std]
#![no_main]

use lde_user::{ms_to_tsc, println, rdtsc, sleep_ms, tsc_hz, Args};

fn main(args: Args) -> i32 {
    let (Some(n), Some(ms)) = (args.number(1, 10), args.number(2, 20)) else {
        println!("usage: sleeper [N [MS]]");
        return 2;
    };
    let want = ms_to_tsc(ms);
    let (mut min, mut max, mut sum, mut early) = (u64::MAX, 0, 0, 0);
    for _ in 0..n {
        let start = rdtsc();
        let r = sleep_ms(ms);
        let slept = rdtsc() - start;
        if r != 0 {
            println!("sleeper: sleep_ms({ms}) returned {r}");
            return 1;
        }
        if slept < want {
            early += 1;
        }
        let late = slept.saturating_sub(want);
        min = min.min(late);
        max = max.max(late);
        sum += late;
    }
    let us = |cycles: u64| cycles * 1_000_000 / tsc_hz().max(1);
    println!(
        "sleeper: {n} sleeps of {ms} ms, {early} early, late by min {} us, mean {} us, max {} us",
        us(min),
        us(sum / n.max(1)),
        us(max)
    );
    i32::from(early != 0)
}

lde_user::entry!(main);
