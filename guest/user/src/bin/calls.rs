//! Makes N getpid calls through each door (default 1000) and checks every result.
#![no_std]
#![no_main]

use lde_user::{nr, println, Args, Door};

fn main(args: Args) -> i32 {
    let Some(n) = args.number(1, 1000) else {
        println!("usage: calls [N]");
        return 2;
    };
    let pid = lde_user::getpid();
    let mut wrong = 0;
    for door in [Door::Syscall, Door::Int80] {
        for _ in 0..n {
            if door.call(nr::GETPID, [0; 6]) != pid {
                wrong += 1;
            }
        }
    }
    println!("calls: {n} getpid via syscall and {n} via int 0x80 (pid {pid}), {wrong} wrong");
    i32::from(wrong != 0)
}

lde_user::entry!(main);
