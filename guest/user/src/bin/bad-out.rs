//! Writes the VMM's shutdown port (0xf4) to end the VM from ring 3; killed (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-out", "out to the VMM shutdown port", || {
        // SAFETY: port I/O in ring 3 with IOPL 0 raises #GP.
        unsafe { core::arch::asm!("out dx, eax", in("dx") lde_abi::ports::SHUTDOWN_PORT, in("eax") 0u32) }
    })
}

lde_user::entry!(main);
