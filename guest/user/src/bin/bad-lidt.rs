//! Loads an empty IDT with lidt; killed (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-lidt", "lidt", || {
        let descriptor = [0u64; 2];
        // SAFETY: lidt in ring 3 raises #GP.
        unsafe { core::arch::asm!("lidt [{}]", in(reg) descriptor.as_ptr()) }
    })
}

lde_user::entry!(main);
