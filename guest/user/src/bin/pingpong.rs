//! Starts a partner and yields to it N times (default 100): N round trips, 2N voluntary switches.
#![no_std]
#![no_main]

use lde_user::{getpid, println, spawn, yield_now, Args};

fn main(args: Args) -> i32 {
    let Some(n) = args.number(1, 100) else {
        println!("usage: pingpong [N]");
        return 2;
    };
    let partner = args.get(2) == Some("partner");
    if !partner {
        let mut spec = [0u8; 64];
        let text = lde_user::format_into(&mut spec, format_args!("pingpong {n} partner"));
        let pid = spawn(text);
        if pid < 0 {
            println!("pingpong: cannot start the partner: {pid}");
            return 1;
        }
    }
    for _ in 0..n {
        yield_now();
    }
    println!("pingpong: pid {} yielded {n} times{}", getpid(), if partner { " (partner)" } else { "" });
    0
}

lde_user::entry!(main);
