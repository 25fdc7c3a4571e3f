//! Loads its own page-table root into CR3; killed (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-cr3", "mov to cr3", || {
        // SAFETY: mov to CR3 in ring 3 raises #GP.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) 0x1000u64) }
    })
}

lde_user::entry!(main);
