//! Sets its FS and GS base (wrfsbase/wrgsbase, where ring 3 may) and checks them over N yields: `fsgs PATTERN [N]`.
//!
//! Where the CPU lets ring 3 write the segment bases, two of these with different patterns
//! prove that the kernel switches the bases with the process: each must read back its own.
//! Where it does not (#UD: CR4.FSGSBASE clear, as lde leaves it), the program says so and
//! exits 0: a process then cannot change the bases at all.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{nr, println, yield_now, Args};

/// Tries to set FS base = `fs` and GS base = `gs`; false if the CPU refused (#UD, fixed up).
fn try_set_bases(fs: u64, gs: u64) -> bool {
    let ok: u64;
    // SAFETY: arms the kernel's fixup for the wrfsbase (a #UD there resumes at label 3 instead
    // of killing the process), then writes both bases. `syscall` changes rax, rcx and r11.
    unsafe {
        asm!(
            "lea rdi, [rip + 2f]",
            "lea rsi, [rip + 3f]",
            "syscall",
            "xor {ok:e}, {ok:e}",
            "2: wrfsbase {fs}",
            "wrgsbase {gs}",
            "mov {ok:e}, 1",
            "3:",
            fs = in(reg) fs,
            gs = in(reg) gs,
            ok = out(reg) ok,
            inlateout("rax") nr::FIXUP => _,
            out("rdi") _, out("rsi") _, out("rcx") _, out("r11") _,
        );
    }
    lde_user::Door::Syscall.call(nr::FIXUP, [0; 6]);
    ok == 1
}

fn bases() -> (u64, u64) {
    let (fs, gs): (u64, u64);
    // SAFETY: only reads the bases; called after try_set_bases showed the instructions work.
    unsafe { asm!("rdfsbase {}", "rdgsbase {}", out(reg) fs, out(reg) gs, options(nomem, nostack)) };
    (fs, gs)
}

fn main(args: Args) -> i32 {
    let (Some(pattern), Some(n)) = (args.number(1, 0x1111), args.number(2, 100)) else {
        println!("usage: fsgs PATTERN [N]");
        return 2;
    };
    // Canonical user-half values: the bases must hold canonical addresses.
    let fs = pattern & 0x7fff_ffff_ffff;
    let gs = !pattern & 0x7fff_ffff_ffff;
    if !try_set_bases(fs, gs) {
        println!("fsgs: ring 3 cannot write the segment bases here (#UD)");
        return 0;
    }
    let mut wrong = 0;
    for _ in 0..n {
        yield_now();
        if bases() != (fs, gs) {
            wrong += 1;
        }
    }
    println!("fsgs: {pattern:#x}: bases checked after {n} yields, {wrong} wrong");
    i32::from(wrong != 0)
}

lde_user::entry!(main);
