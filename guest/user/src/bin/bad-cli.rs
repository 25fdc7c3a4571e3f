//! Executes cli in ring 3; the kernel kills it (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-cli", "cli", || {
        // SAFETY: a privileged instruction in ring 3: it raises #GP.
        unsafe { core::arch::asm!("cli") }
    })
}

lde_user::entry!(main);
