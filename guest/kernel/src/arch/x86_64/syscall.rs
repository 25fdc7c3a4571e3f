//! The `syscall` door: MSR setup and the entry stub.
//!
//! On hardware KVM and QEMU, `syscall` from ring 3 lands at `syscall_entry` in ring 0. The stub
//! switches to the current process's kernel stack and builds the same [`TrapFrame`] an interrupt
//! would, with the pseudo-vector [`SYSCALL_VECTOR`], then joins the common trap path; the exit
//! path returns with `sysretq`.
//!
//! On PVM hosts `syscall` does not reach ring 0 (see the README's "Host kinds"): the CPU stays
//! in ring 3 at LSTAR and faults fetching the supervisor page there. `traps.rs` recognises that
//! #PF and completes the call (the "recovered" path).
//!
//! [`TrapFrame`]: super::trap::TrapFrame

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

use super::gdt::{KERNEL_CODE_SELECTOR, USER_CODE32_SELECTOR, USER_CODE_SELECTOR, USER_DATA_SELECTOR};

/// The pseudo-vector in the frame of a system call that came through `syscall`.
pub const SYSCALL_VECTOR: u64 = 0x100;

const STAR_MSR: u32 = 0xc000_0081;
const LSTAR_MSR: u32 = 0xc000_0082;
const SFMASK_MSR: u32 = 0xc000_0084;
/// RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC (as Linux).
const SYSCALL_RFLAGS_MASK: u64 = 0x4_7700;

/// The kernel stack top `syscall_entry` switches to: the running process's (= TSS.RSP0).
#[no_mangle]
static SYSCALL_KERNEL_RSP: AtomicU64 = AtomicU64::new(0);
/// Where `syscall_entry` parks the user RSP while it switches stacks (one CPU, IF=0).
#[no_mangle]
static SYSCALL_USER_RSP: AtomicU64 = AtomicU64::new(0);

// Entry contract (AMD64 `syscall`): CPL0, RIP = LSTAR, RCX = user RIP, R11 = user RFLAGS,
// RFLAGS masked by SFMASK (IF=0), RSP still the user's. Leaves: RSP = SYSCALL_KERNEL_RSP with a
// complete interrupt-style frame (ss, rsp, rflags, cs, rip, error 0, vector SYSCALL_VECTOR)
// below it, then jumps to trap_common, which saves the general registers.
global_asm!(
    r#"
    .text
    .p2align 4
    .global syscall_entry
syscall_entry:
    movq %rsp, SYSCALL_USER_RSP(%rip)
    movq SYSCALL_KERNEL_RSP(%rip), %rsp
    pushq ${user_ds}
    pushq SYSCALL_USER_RSP(%rip)
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq $0
    pushq ${vector}
    jmp trap_common
    "#,
    user_ds = const USER_DATA_SELECTOR,
    user_cs = const USER_CODE_SELECTOR,
    vector = const SYSCALL_VECTOR,
    options(att_syntax)
);

extern "C" {
    fn syscall_entry();
}

/// The address `syscall` jumps to (LSTAR).
pub fn entry_address() -> u64 {
    syscall_entry as *const () as u64
}

/// Enables `syscall`/`sysret`: EFER.SCE, STAR selectors, LSTAR, SFMASK.
pub fn init() {
    let star = (u64::from(USER_CODE32_SELECTOR) << 48) | (u64::from(KERNEL_CODE_SELECTOR) << 32);
    // SAFETY: these MSRs only configure the syscall instruction; the selectors match the GDT
    // (sysret: CS = 0x23 + 16 = 0x33, SS = 0x23 + 8 = 0x2b; syscall: CS 0x10, SS 0x18).
    unsafe {
        Msr::new(STAR_MSR).write(star);
        Msr::new(LSTAR_MSR).write(entry_address());
        Msr::new(SFMASK_MSR).write(SYSCALL_RFLAGS_MASK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}

/// Sets the kernel stack for the next `syscall` (the running process's).
pub fn set_kernel_stack(top: u64) {
    SYSCALL_KERNEL_RSP.store(top, Ordering::Relaxed);
}
