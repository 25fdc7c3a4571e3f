//! Jumps to the kernel's entry point at 1 MiB; killed (#PF: fetch from a supervisor page).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-kjump", "a jump into kernel code", || {
        // SAFETY: fetching from a supervisor-only page in ring 3 raises #PF.
        unsafe { core::arch::asm!("jmp {}", in(reg) 0x10_0000u64) }
    })
}

lde_user::entry!(main);
