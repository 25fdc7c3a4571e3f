//! The context switch: `switch_context(&mut saved_rsp, next_rsp)`.

use core::arch::global_asm;

// Contract (System V call): RDI = where to store the current RSP, RSI = the RSP to resume.
// Saves the callee-saved registers (rbp, rbx, r12–r15) on the current stack, stores RSP,
// switches to the other stack, restores its callee-saved registers and returns to whatever
// return address is there: the caller of that context's last switch_context, or, for a new
// process, `entry::new_process_return()` (see `new_process_stack`).
global_asm!(
    r#"
    .text
    .global switch_context
switch_context:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    "#,
    options(att_syntax)
);

extern "C" {
    fn switch_context(save: *mut u64, next: u64);
}

/// Saves the current context into `*save` and resumes the one saved at `next`.
///
/// # Safety
/// `next` must be a stack pointer saved by `switch_context` or built by `new_process_stack`,
/// on a stack that is still valid; interrupts must be off.
pub unsafe fn switch(save: *mut u64, next: u64) {
    // SAFETY: the caller's contract; switch_context follows the C ABI for the registers it
    // does not save.
    unsafe { switch_context(save, next) }
}

/// Callee-saved registers `switch_context` pops.
const SAVED_REGS: usize = 6;

/// Prepares a new process's kernel stack below `frame_addr` (where its first TrapFrame lies)
/// so that switching to it returns through `trap_return` into ring 3. Returns the saved RSP.
///
/// # Safety
/// The `SAVED_REGS + 1` qwords below `frame_addr` must be writable kernel stack.
pub unsafe fn new_process_stack(frame_addr: u64) -> u64 {
    let ret = frame_addr - 8;
    // SAFETY: inside the process's kernel stack (caller's contract).
    unsafe {
        (ret as *mut u64).write(super::entry::new_process_return());
        for i in 1..=SAVED_REGS as u64 {
            ((ret - 8 * i) as *mut u64).write(0);
        }
    }
    ret - 8 * SAVED_REGS as u64
}
