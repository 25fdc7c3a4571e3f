//! Executes `sgdt` in ring 3, which would tell it where the kernel's GDT lies. Killed (#GP)
//! where the kernel turned on UMIP (`stats: protection umip=on`); elsewhere the instruction
//! runs and the program exits 1.
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    let mut gdtr = [0u8; 10];
    lde_user::attempt("bad-sgdt", "sgdt", || {
        // SAFETY: stores 10 bytes into the local buffer; with UMIP it raises #GP instead.
        unsafe { core::arch::asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack)) }
    })
}

lde_user::entry!(main);
