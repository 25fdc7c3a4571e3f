//! The operations `bench` times, each an asm loop that runs it a given number of times, with
//! the labels where the faulting ones fault and where the kernel's fixup resumes them.

use core::arch::global_asm;

use lde_abi::user::USER_BASE;

/// An unmapped user address, for the #PF loop.
pub const UNMAPPED: u64 = USER_BASE + 0x4000_0000;

// Loop contract: rdi = iteration count (> 0), rsi = an address for the #PF loop; each loop runs
// its operation rdi times and returns. Registers clobbered: rax, rcx, rdx, r11 (and rdi, rsi);
// the cpuid loop saves rbx. Labels `*_fault`/`*_resume` are where an operation faults and where
// the kernel's fixup resumes it.
global_asm!(
    r#"
    .text
    .global bench_empty_loop
bench_empty_loop:
2:  dec rdi
    jnz 2b
    ret

    .global bench_syscall_loop
bench_syscall_loop:
2:  xor eax, eax
    syscall
    dec rdi
    jnz 2b
    ret

    .global bench_int80_loop
bench_int80_loop:
2:  xor eax, eax
    int 0x80
    dec rdi
    jnz 2b
    ret

    .global bench_yield_loop
bench_yield_loop:
2:  mov eax, 4
    syscall
    dec rdi
    jnz 2b
    ret

    .global bench_ud_loop
    .global bench_ud_fault
    .global bench_ud_resume
bench_ud_loop:
bench_ud_fault:
    ud2
bench_ud_resume:
    dec rdi
    jnz bench_ud_loop
    ret

    .global bench_bp_loop
    .global bench_bp_resume
bench_bp_loop:
    int3
bench_bp_resume:
    dec rdi
    jnz bench_bp_loop
    ret

    .global bench_pf_loop
    .global bench_pf_fault
    .global bench_pf_resume
bench_pf_loop:
bench_pf_fault:
    mov rax, [rsi]
bench_pf_resume:
    dec rdi
    jnz bench_pf_loop
    ret

    .global bench_cpuid_loop
bench_cpuid_loop:
    push rbx
2:  xor eax, eax
    xor ecx, ecx
    cpuid
    dec rdi
    jnz 2b
    pop rbx
    ret

    .global bench_out_loop
    .global bench_out_fault
    .global bench_out_resume
bench_out_loop:
bench_out_fault:
    out 0xf9, al
bench_out_resume:
    dec rdi
    jnz bench_out_loop
    ret
    "#
);

extern "C" {
    pub fn bench_empty_loop(n: u64);
    pub fn bench_syscall_loop(n: u64);
    pub fn bench_int80_loop(n: u64);
    pub fn bench_yield_loop(n: u64);
    pub fn bench_ud_loop(n: u64);
    pub fn bench_bp_loop(n: u64);
    pub fn bench_pf_loop(n: u64, addr: u64);
    pub fn bench_cpuid_loop(n: u64);
    pub fn bench_out_loop(n: u64);
    pub static bench_ud_fault: u8;
    pub static bench_ud_resume: u8;
    pub static bench_bp_resume: u8;
    pub static bench_pf_fault: u8;
    pub static bench_pf_resume: u8;
    pub static bench_out_fault: u8;
    pub static bench_out_resume: u8;
}

/// Runs one of the asm loops above.
pub fn run_loop(f: unsafe extern "C" fn(u64), n: u64) {
    // SAFETY: the loops only execute their operation n times (see the contract above the
    // asm); the faulting ones run only with the kernel's fixup armed for their fault label.
    unsafe { f(n) }
}

/// Runs the #PF loop on `addr`.
pub fn run_pf_loop(n: u64, addr: u64) {
    // SAFETY: as in `run_loop`; `addr` is unmapped and the fixup resumes after the load.
    unsafe { bench_pf_loop(n, addr) }
}

/// The address of a label of the asm above.
pub fn label(sym: *const u8) -> u64 {
    sym as u64
}
