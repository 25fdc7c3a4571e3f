//! `bad-kjump [ADDR]`: jumps to kernel address ADDR (decimal) (default: the kernel's entry point at
//! 1 MiB); killed (#PF: fetch from a supervisor page).
//!
//! Given the address of the kernel's `syscall` entry (LSTAR), this is a forged system call:
//! RCX and R11 hold what a real `syscall` right before a `ud2` would have left, and EAX/EDI ask
//! for `exit(42)`. The kernel must kill it with its #PF (it is not a `syscall`), never serve it
//! as `exit(42)`.
#![no_std]
#![no_main]

use lde_user::{nr, println};

fn main(args: lde_user::Args) -> i32 {
    let Some(target) = args.number(1, 0x10_0000) else {
        println!("usage: bad-kjump [ADDRESS (decimal)]");
        return 2;
    };
    lde_user::attempt("bad-kjump", "a jump into kernel code", || {
        // SAFETY: fetching from a supervisor-only page in ring 3 raises #PF; the `syscall`
        // and `ud2` after the jump are never reached.
        unsafe {
            core::arch::asm!(
                "lea rcx, [rip + 2f]",
                "pushfq",
                "pop r11",
                "jmp {target}",
                "syscall",
                "2: ud2",
                target = in(reg) target,
                in("eax") nr::EXIT as u32,
                in("edi") 42,
                options(noreturn),
            )
        }
    })
}

lde_user::entry!(main);
