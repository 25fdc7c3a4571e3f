//! Executes hlt in ring 3; the kernel kills it (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-hlt", "hlt", || {
        // SAFETY: a privileged instruction in ring 3: it raises #GP and never returns here.
        unsafe { core::arch::asm!("hlt") }
    })
}

lde_user::entry!(main);
