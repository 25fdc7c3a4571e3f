//! Makes a `getpid` through an `int 0x80` whose two bytes lie on two pages (`CD` at the last
//! byte of one, `80` at the first of the next) and checks the answer against `getpid` through
//! `syscall`. On hosts where `int 0x80` arrives as #UD (PVM) the kernel reads the instruction's
//! bytes to recognise it, the second one on the other page. Exits 0 if the answers agree.
#![no_std]
#![no_main]

use lde_user::{getpid, nr, println};

// `lde_straddle`: getpid through `int 0x80` with the instruction across a page boundary.
core::arch::global_asm!(
    r#"
    .text
    .p2align 12
    .global lde_straddle
    .skip 4095 - (lde_straddle_int - lde_straddle), 0x90
lde_straddle:
    mov eax, {getpid}
lde_straddle_int:
    int 0x80
    ret
    "#,
    getpid = const nr::GETPID,
);

extern "C" {
    fn lde_straddle() -> i64;
}

fn main(_args: lde_user::Args) -> i32 {
    let straddle = lde_straddle as *const () as u64 + 5;
    // SAFETY: lde_straddle follows the C ABI: it returns the call's result in rax and changes
    // only rax (and rcx, r11, which `int 0x80` leaves alone but the ABI lets it clobber).
    let through_int80 = unsafe { lde_straddle() };
    let expected = getpid();
    println!(
        "straddle: int 0x80 at {straddle:#x} (page offset {:#x}) returned {through_int80}, getpid {expected}",
        straddle & 0xfff
    );
    if through_int80 == expected && straddle & 0xfff == 0xfff {
        0
    } else {
        1
    }
}

lde_user::entry!(main);
