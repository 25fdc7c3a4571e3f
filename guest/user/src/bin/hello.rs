//! Prints a line from ring 3 once through `syscall` and once through `int 0x80`.
#![no_std]
#![no_main]

use lde_user::{entry, getpid, print_via, Door};

fn main(_args: lde_user::Args) -> i32 {
    let pid = getpid();
    print_via(Door::Syscall, format_args!("hello from ring 3 (pid {pid}), written through syscall\n"));
    print_via(Door::Int80, format_args!("hello from ring 3 (pid {pid}), written through int 0x80\n"));
    0
}

entry!(main);
