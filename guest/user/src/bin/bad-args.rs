//! Passes garbage to every system call and checks each answers with the right error code.
#![no_std]
#![no_main]

use lde_abi::syscall::{EBADF, ECHILD, EFAULT, EINVAL, ENOSYS};
use lde_abi::user::{USER_BASE, USER_END};
use lde_user::{nr, println, Args, Door};

const KERNEL_TEXT: u64 = 0x10_0000;
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;

fn main(_args: Args) -> i32 {
    let buf = [0u8; 16];
    let ok_ptr = buf.as_ptr() as u64;
    let checks: &[(&str, u64, [u64; 6], i64)] = &[
        ("write to a bad fd", nr::WRITE, [7, ok_ptr, 4, 0, 0, 0], -EBADF),
        ("write from null", nr::WRITE, [1, 0, 4, 0, 0, 0], -EFAULT),
        ("write from kernel text", nr::WRITE, [1, KERNEL_TEXT, 4, 0, 0, 0], -EFAULT),
        ("write from a non-canonical address", nr::WRITE, [1, NON_CANONICAL, 4, 0, 0, 0], -EFAULT),
        ("write from the upper half", nr::WRITE, [1, 0xffff_8000_0000_0000, 4, 0, 0, 0], -EFAULT),
        ("write past the end of user space", nr::WRITE, [1, USER_END - 2, 8, 0, 0, 0], -EFAULT),
        ("write with a wrapping length", nr::WRITE, [1, ok_ptr, u64::MAX, 0, 0, 0], -EFAULT),
        ("write from an unmapped user page", nr::WRITE, [1, USER_BASE + 0x4000_0000, 4, 0, 0, 0], -EFAULT),
        ("read into kernel text", nr::READ, [0, KERNEL_TEXT, 4, 0, 0, 0], -EFAULT),
        ("read into read-only code", nr::READ, [0, USER_BASE, 4, 0, 0, 0], -EFAULT),
        ("read from a bad fd", nr::READ, [9, ok_ptr, 4, 0, 0, 0], -EBADF),
        ("exit with status 256", nr::EXIT, [256, 0, 0, 0, 0, 0], -EINVAL),
        ("sleep for longer than an hour", nr::SLEEP_MS, [u64::MAX, 0, 0, 0, 0, 0], -EINVAL),
        ("wait with no child, whatever the other registers hold", nr::WAIT, [u64::MAX; 6], -ECHILD),
        ("unknown number", nr::COUNT, [0; 6], -ENOSYS),
        ("huge number", u64::MAX, [0; 6], -ENOSYS),
        ("negative number", -1i64 as u64 - 5, [0; 6], -ENOSYS),
    ];
    let mut failures = 0;
    for door in [Door::Syscall, Door::Int80] {
        for (what, number, args, want) in checks {
            let got = door.call(*number, *args);
            if got != *want {
                println!("bad-args: {what} via {door:?}: got {got}, want {want}");
                failures += 1;
            }
        }
    }
    println!("bad-args: {} checks, {failures} wrong", 2 * checks.len());
    i32::from(failures != 0)
}

lde_user::entry!(main);
