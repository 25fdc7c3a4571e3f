//! Divides by zero; killed (#DE).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-div0", "a division by zero", || {
        // SAFETY: div by zero raises #DE.
        unsafe { core::arch::asm!("div {0}", in(reg) 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _) }
    })
}

lde_user::entry!(main);
