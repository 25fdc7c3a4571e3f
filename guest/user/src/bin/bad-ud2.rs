//! Executes ud2, the defined invalid opcode; killed (#UD).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-ud2", "ud2", || {
        // SAFETY: ud2 raises #UD.
        unsafe { core::arch::asm!("ud2") }
    })
}

lde_user::entry!(main);
