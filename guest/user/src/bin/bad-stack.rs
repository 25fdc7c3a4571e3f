//! Pushes until its stack runs into the guard page below it; killed (#PF).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-stack", "a stack overflow", || {
        // SAFETY: pushes until the guard page below the stack raises #PF.
        unsafe { core::arch::asm!("2:", "push rax", "jmp 2b", options(noreturn)) }
    })
}

lde_user::entry!(main);
