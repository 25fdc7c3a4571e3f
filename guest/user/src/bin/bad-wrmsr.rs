//! Points LSTAR (the syscall entry) at itself with wrmsr; killed (#GP).
#![no_std]
#![no_main]

fn main(_args: lde_user::Args) -> i32 {
    lde_user::attempt("bad-wrmsr", "wrmsr to LSTAR", || {
        // SAFETY: wrmsr in ring 3 raises #GP.
        unsafe { core::arch::asm!("wrmsr", in("ecx") 0xc000_0082u32, in("eax") 0u32, in("edx") 0x80u32) }
    })
}

lde_user::entry!(main);
