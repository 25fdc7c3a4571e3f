//! Reads or writes one I/O port from ring 3: `ports PORT in|out|inl|outl` (PORT in hex); the TSS I/O bitmap decides (#GP if denied).
//!
//! `in`/`out` move one byte, `inl`/`outl` four (the bitmap must allow all four ports). When
//! the access works the program says so and exits 0; a denied one never returns.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{println, Args};

fn main(args: Args) -> i32 {
    let port = args.get(1).map(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16));
    let (Some(Ok(port)), Some(op)) = (port, args.get(2)) else {
        println!("usage: ports PORT in|out|inl|outl");
        return 2;
    };
    println!("ports: {op} {port:#x}: trying");
    let value: u32 = match op {
        // SAFETY: port I/O from ring 3 with IOPL 0: the CPU checks the TSS I/O bitmap and
        // raises #GP if it denies the port; the only port it opens is the bench port, whose
        // writes are dropped. Only the named registers change.
        "in" => unsafe {
            let v: u8;
            asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack));
            u32::from(v)
        },
        // SAFETY: as for "in".
        "out" => unsafe {
            asm!("out dx, al", in("dx") port, in("al") 0u8, options(nomem, nostack));
            0
        },
        // SAFETY: as for "in".
        "inl" => unsafe {
            let v: u32;
            asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack));
            v
        },
        // SAFETY: as for "in".
        "outl" => unsafe {
            asm!("out dx, eax", in("dx") port, in("eax") 0u32, options(nomem, nostack));
            0
        },
        _ => {
            println!("usage: ports PORT in|out|inl|outl");
            return 2;
        }
    };
    println!("ports: {op} {port:#x}: allowed, value {value:#x}");
    0
}

lde_user::entry!(main);
