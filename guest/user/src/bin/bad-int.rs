//! `bad-int [VECTOR]`: executes `int VECTOR` (decimal, default 80 = 0x50) in ring 3, a vector
//! whose gate ring 3 may not use (DPL 0, or no gate at all); killed (#GP). The kernel must not
//! mistake it for a device's interrupt on a vector without a gate, which also arrives as a #GP
//! naming the vector.
#![no_std]
#![no_main]

use lde_user::println;

// 256 stubs of 4 bytes: `int $v` (CD v, even for 3) then `ud2`.
core::arch::global_asm!(
    r#"
    .text
    .global lde_int_stubs
lde_int_stubs:
    .set v, 0
    .rept 256
    .byte 0xcd, v, 0x0f, 0x0b
    .set v, v + 1
    .endr
    "#
);

extern "C" {
    static lde_int_stubs: [u8; 1024];
}

fn main(args: lde_user::Args) -> i32 {
    let Some(vector) = args.number(1, 80).filter(|v| *v < 256) else {
        println!("usage: bad-int [VECTOR (decimal, 0 to 255)]");
        return 2;
    };
    lde_user::attempt("bad-int", "int with a vector ring 3 may not use", || {
        // SAFETY: only the stub's address is taken; jumping there runs `int` then `ud2`, and the
        // kernel ends the process at one of them.
        unsafe {
            let stub = core::ptr::addr_of!(lde_int_stubs) as u64 + 4 * vector;
            core::arch::asm!("jmp {}", in(reg) stub, options(noreturn))
        }
    })
}

lde_user::entry!(main);
