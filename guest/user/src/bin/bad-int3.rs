//! Executes int3, the breakpoint instruction; killed (#BP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-int3", "int3", || {
        // SAFETY: int3 raises #BP, which the kernel does not handle for processes.
        unsafe { core::arch::asm!("int3") }
    })
}

lde_user::entry!(main);
