//! Checks that every byte of the memory it was given is zero (`fresh check [UNTIL_MS]`) or fills it (`fresh dirty [UNTIL_MS]`).
//!
//! The memory: a 1.5 MiB zero-filled region outside the BSS the runtime clears (section
//! `.fresh`, so only the kernel could have zeroed it), the unused ends of the last page of its
//! text, rodata, data and BSS, and the whole stack below the frame it runs in. `check` counts the
//! bytes that are not zero and exits 1 if there is one; `dirty` writes a pattern over all of
//! it that the kernel must wipe before another process gets those pages. With UNTIL_MS both
//! keep their memory until the kernel's uptime reaches it (so that a parent can fill memory).
#![no_std]
#![no_main]

use core::cell::UnsafeCell;

use lde_abi::user::{USER_STACK_SIZE, USER_STACK_TOP};
use lde_user::{println, sleep_ms, uptime_ms, Args};

const PAGE: u64 = 4096;
const AREA_SIZE: usize = 1536 * 1024;
/// What `dirty` writes.
const PATTERN: u64 = 0xa5a5_a5a5_a5a5_a5a5;

/// Memory the kernel zero-fills (a NOBITS section) and this program's runtime never touches.
#[repr(C, align(4096))]
struct Area(UnsafeCell<[u8; AREA_SIZE]>);

// SAFETY: one thread; the area is only accessed through volatile reads and writes below.
unsafe impl Sync for Area {}

#[link_section = ".bss.fresh"]
static AREA: Area = Area(UnsafeCell::new([0; AREA_SIZE]));

extern "C" {
    static __text_end: u8;
    static __rodata_end: u8;
    static __data_end: u8;
    static __bss_end: u8;
}

/// `[start, end)` byte ranges, 8-byte aligned, that this program may read and write or read.
struct Regions {
    area: (u64, u64),
    tails: [(u64, u64); 4],
    stack: (u64, u64),
}

fn regions(stack_in_use: u64) -> Regions {
    let tail = |end: u64| ((end + 7) & !7, end.div_ceil(PAGE) * PAGE);
    let ends = [
        core::ptr::addr_of!(__text_end) as u64,
        core::ptr::addr_of!(__rodata_end) as u64,
        core::ptr::addr_of!(__data_end) as u64,
        core::ptr::addr_of!(__bss_end) as u64,
    ];
    let area = AREA.0.get() as u64;
    Regions {
        area: (area, area + AREA_SIZE as u64),
        tails: ends.map(tail),
        // Everything below this function's caller's frame, with a margin for its own.
        stack: (USER_STACK_TOP - USER_STACK_SIZE, (stack_in_use - 512) & !7),
    }
}

/// Bytes of `[start, end)` that are not zero.
fn nonzero(start: u64, end: u64) -> u64 {
    let mut count = 0;
    let mut at = start;
    while at < end {
        // SAFETY: `[start, end)` is mapped readable (one of `regions`) and 8-byte aligned.
        let word = unsafe { (at as *const u64).read_volatile() };
        count += u64::from(word.to_ne_bytes().iter().filter(|&&b| b != 0).count() as u8);
        at += 8;
    }
    count
}

/// Writes [`PATTERN`] over `[start, end)`.
fn fill(start: u64, end: u64) {
    let mut at = start;
    while at < end {
        // SAFETY: `[start, end)` is mapped writable (the area or the unused stack) and aligned.
        unsafe { (at as *mut u64).write_volatile(PATTERN) };
        at += 8;
    }
}

fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: only reads RSP.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

fn main(args: Args) -> i32 {
    let (Some(mode), Some(until)) = (args.get(1), args.number(2, 0)) else {
        println!("usage: fresh check|dirty [UNTIL_MS]");
        return 2;
    };
    let r = regions(stack_pointer());
    let status = match mode {
        "check" => {
            let area = nonzero(r.area.0, r.area.1);
            let tails: u64 = r.tails.iter().map(|&(s, e)| nonzero(s, e)).sum();
            let stack = nonzero(r.stack.0, r.stack.1);
            let size = |(s, e): (u64, u64)| e - s;
            let checked = size(r.area) + r.tails.iter().map(|&t| size(t)).sum::<u64>() + size(r.stack);
            let bad = area + tails + stack;
            println!("fresh: {checked} bytes checked, {bad} not zero (area {area}, page ends {tails}, stack {stack})");
            i32::from(bad != 0)
        }
        "dirty" => {
            fill(r.area.0, r.area.1);
            fill(r.stack.0, r.stack.1);
            0
        }
        _ => {
            println!("usage: fresh check|dirty [UNTIL_MS]");
            return 2;
        }
    };
    let now = uptime_ms() as u64;
    if until > now {
        sleep_ms(until - now);
    }
    status
}

lde_user::entry!(main);
