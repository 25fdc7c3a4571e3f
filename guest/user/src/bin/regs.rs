//! Checks that system calls keep every register they promise to: `regs [ROUNDS]`.
//!
//! Each round loads a distinct value into every general register but RSP, enters the kernel
//! with `yield` (which switches to another ready process and back), `sleep_ms 1` (which blocks)
//! and `getpid` (which does not), through `syscall` and through `int 0x80`, and compares each
//! register afterwards: `syscall` may change only RAX (the result), RCX and R11 (the return RIP
//! and RFLAGS, as the instruction defines); `int 0x80` only RAX. The kernel restores some of
//! them from the trap frame and leaves others as its own code gave them back (the callee-saved
//! ones, entry.rs's `syscall_return`): this catches either going wrong. Prints
//! `regs: N rounds, every register kept` and exits 0, or names the first register that changed
//! and exits 1.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{nr, println, Args};

/// The registers in the order the check stores them.
const NAMES: [&str; 15] =
    ["rbx", "rbp", "r12", "r13", "r14", "r15", "rdi", "rsi", "rdx", "r8", "r9", "r10", "rcx", "r11", "rax"];

/// What each register holds before the call: a pattern that names the register and the round.
fn pattern(round: u64, register: usize) -> u64 {
    0x5a00_0000_0000_0000 | (round << 16) | ((register as u64) << 8) | 0x11
}

/// What one call takes: every register's value (RDI's is the call's one argument), the call's
/// number, the door, and where the registers go afterwards.
#[repr(C)]
struct Call {
    regs: [u64; 15],
    number: u64,
    int80: u64,
    out: *mut [u64; 15],
}

/// Loads `c.regs`, enters the kernel with `c.number` through `int 0x80` if `c.int80` else
/// `syscall`, and stores every register to `c.out` (RAX, the result, last).
fn call(c: &Call) {
    // SAFETY: the block saves RBX and RBP (which the compiler reserves) and the pointer to `c`
    // on the stack, loads every register from `c`, enters the kernel, stores every register
    // through `c.out`, and restores RBX and RBP; the stack is balanced. Every other register is
    // declared clobbered.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push rax",
            "mov rbx, [rax + 0*8]",
            "mov rbp, [rax + 1*8]",
            "mov r12, [rax + 2*8]",
            "mov r13, [rax + 3*8]",
            "mov r14, [rax + 4*8]",
            "mov r15, [rax + 5*8]",
            "mov rdi, [rax + 6*8]",
            "mov rsi, [rax + 7*8]",
            "mov rdx, [rax + 8*8]",
            "mov r8, [rax + 9*8]",
            "mov r9, [rax + 10*8]",
            "mov r10, [rax + 11*8]",
            "mov rcx, [rax + 12*8]",
            "mov r11, [rax + 13*8]",
            "cmp qword ptr [rax + 16*8], 0",
            "mov rax, [rax + 15*8]",
            "jnz 2f",
            "syscall",
            "jmp 3f",
            "2:",
            "int 0x80",
            "3:",
            "xchg rax, [rsp]",
            "mov rax, [rax + 17*8]",
            "mov [rax + 0*8], rbx",
            "mov [rax + 1*8], rbp",
            "mov [rax + 2*8], r12",
            "mov [rax + 3*8], r13",
            "mov [rax + 4*8], r14",
            "mov [rax + 5*8], r15",
            "mov [rax + 6*8], rdi",
            "mov [rax + 7*8], rsi",
            "mov [rax + 8*8], rdx",
            "mov [rax + 9*8], r8",
            "mov [rax + 10*8], r9",
            "mov [rax + 11*8], r10",
            "mov [rax + 12*8], rcx",
            "mov [rax + 13*8], r11",
            "pop rcx",
            "mov [rax + 14*8], rcx",
            "pop rbp",
            "pop rbx",
            inout("rax") c as *const Call => _,
            out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
}

/// The first register the call changed that it may not, if any.
fn changed(int80: bool, before: &[u64; 15], after: &[u64; 15]) -> Option<usize> {
    // `syscall` may change RCX and R11 (12, 13); RAX (14) is the result, RDI (6) the argument.
    let allowed = |i: usize| i == 14 || (!int80 && (i == 12 || i == 13));
    (0..15).find(|&i| !allowed(i) && before[i] != after[i])
}

fn main(args: Args) -> i32 {
    let Some(rounds) = args.number(1, 20) else {
        println!("usage: regs [ROUNDS]");
        return 2;
    };
    let calls = [(nr::YIELD, 0), (nr::SLEEP_MS, 1), (nr::GETPID, 0)];
    for round in 0..rounds {
        for int80 in [false, true] {
            for (number, arg) in calls {
                let mut before = [0u64; 15];
                for (i, slot) in before.iter_mut().enumerate() {
                    *slot = pattern(round, i);
                }
                before[6] = arg;
                let mut after = [0u64; 15];
                call(&Call { regs: before, number, int80: u64::from(int80), out: &mut after });
                if let Some(i) = changed(int80, &before, &after) {
                    let door = if int80 { "int 0x80" } else { "syscall" };
                    println!(
                        "regs: {} changed across call {number} through {door}: {:#x} -> {:#x}",
                        NAMES[i], before[i], after[i]
                    );
                    return 1;
                }
            }
        }
    }
    println!("regs: {rounds} rounds, every register kept");
    0
}

lde_user::entry!(main);
