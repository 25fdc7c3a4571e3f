//! The system-call doors' ways in and out: `syscall_entry` (LSTAR) and `int80_entry` (gate
//! 0x80), the entries of the two doors a PVM host delivers as faults (`pf_syscall_entry` on
//! gate 14, `ud_int80_entry` on gate 6, where the doors' self-test found them), and
//! `syscall_return`, the lean way back. Each way in builds the frame `trap_common` would, with
//! the door's code (`DOOR_*`) in the error-code slot, and joins the system-call path `TRAP_SAVED`
//! names (entry.rs), whose dispatcher is `trap::syscall_arrived`.

use core::arch::global_asm;
use core::mem::offset_of;

use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

use super::frame::TrapFrame;
use super::gdt::{KERNEL_CODE_SELECTOR, USER_CODE32_SELECTOR, USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use super::percpu::{SYSCALL_RSP_OFFSET, USER_RSP_OFFSET};
use super::vectors::{INT80_VECTOR, PF_VECTOR, SYSCALL_VECTOR, UD_VECTOR};

/// RFLAGS.IF: interrupts enabled.
const RFLAGS_IF: u64 = 1 << 9;

/// The door a system call came through, in the error-code slot of its frame (`syscall_entry`,
/// `pf_syscall_entry`, `int80_entry`, `ud_int80_entry`; `counters::Arrival`).
pub const DOOR_SYSCALL: u64 = 0;
pub const DOOR_SYSCALL_PVM: u64 = 1;
pub const DOOR_INT80: u64 = 2;
pub const DOOR_INT80_PVM: u64 = 3;

// `syscall_entry` contract (AMD64 `syscall`): CPL0, RIP = LSTAR, RCX = user RIP, R11 = user
// RFLAGS, RFLAGS masked by SFMASK (IF=0), RSP still the user's, GS base the user's. Swaps in
// the kernel's GS base (percpu.rs), switches to this processor's syscall stack (`%gs:` its
// `syscall_rsp`), builds the interrupt-style part of the frame (ss, rsp, rflags, cs, rip, error
// 0, vector SYSCALL_VECTOR) and joins the common path where `TRAP_SAVED` says.
//
// `syscall_return` contract: RSP points at a system call's complete TrapFrame from ring 3 (one
// `trap_saved` built, after its dispatcher returned), the kernel's GS base in place. RBX, RBP
// and R12-R15 already hold what the frame saved: the dispatcher, like every function of the
// System V ABI, gave them back as it found them, also after switching away and back (switch.rs
// saves them per context). So only the other registers come from the frame (a system call may
// change RAX, and nothing else writes them). A `syscall` frame leaves with `swapgs; sysretq`
// (RCX, R11, RSP from the frame's rip, rflags, rsp); any other (an `int 0x80`, or a `syscall`
// relabelled for a non-user rip) with `swapgs; iretq` (all of them return to ring 3). Four to
// seven emulated instructions fewer per call than `trap_return`'s full restore.
//
global_asm!(
    r#"
    .text
    .p2align 4
    .global syscall_entry
syscall_entry:
    swapgs
    movq %rsp, %gs:{user_rsp}
    movq %gs:{syscall_rsp}, %rsp
    pushq ${user_ds}
    pushq %gs:{user_rsp}
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq ${door_syscall}
    pushq ${syscall_vector}
    jmp *TRAP_SAVED(%rip)

    /* #PF on a host whose `syscall` stays in ring 3 (doors.rs; the self-test points gate 14
       here only there). Such a `syscall` faults fetching LSTAR with IF clear, which nothing
       else in ring 3 can do (IOPL 0: ring 3 always runs with IF set): that #PF becomes the frame
       `syscall_entry` builds (rip = RCX, rflags = R11, error DOOR_SYSCALL_PVM) on the same stack
       (TSS.RSP0 is the syscall stack's top) and joins it. Anything else (and a `syscall` from
       32-bit code) is an ordinary #PF. */
    .p2align 4
    .global pf_syscall_entry
pf_syscall_entry:
    cmpq $syscall_entry, 8(%rsp)
    jne 1f
    testl ${rflags_if}, 24(%rsp)
    jnz 1f
    cmpq ${user_cs}, 16(%rsp)
    jne 1f
    swapgs
    movq %rcx, 8(%rsp)
    movq %r11, 24(%rsp)
    movq ${door_syscall_pvm}, (%rsp)
    pushq ${syscall_vector}
    jmp *TRAP_SAVED(%rip)
1:  pushq ${pf_vector}
    jmp *TRAP_ENTRY(%rip)

    /* #UD on a host whose `int 0x80` from ring 3 raises #UD at the instruction (doors.rs; gate
       6 points here only there): a #UD from 64-bit ring 3 at `CD 80` becomes the frame of vector
       0x80 (error DOOR_INT80_PVM) after the instruction. The CPU fetched the byte at RIP, and for
       `CD` the byte after it too, so both reads are safe (SMAP is off). An `int 0x80` at a page's
       last byte, and anything else, takes the ordinary #UD path (trap.rs completes that one). */
    .p2align 4
    .global ud_int80_entry
ud_int80_entry:
    cmpq ${user_cs}, 8(%rsp)
    jne 1f
    pushq %rax
    movq 8(%rsp), %rax
    cmpb $0xcd, (%rax)
    jne 2f
    cmpb $0x80, 1(%rax)
    jne 2f
    notl %eax
    testl $0xfff, %eax
    jz 2f
    popq %rax
    addq $2, (%rsp)
    pushq ${door_int80_pvm}
    pushq ${int80_vector}
    swapgs
    jmp *TRAP_SAVED(%rip)
2:  popq %rax
1:  pushq $0
    pushq ${ud_vector}
    jmp *TRAP_ENTRY(%rip)

    /* Gate 0x80, the `int 0x80` door: from ring 3 a system call, which takes the path of one
       (`swapgs`, then where `TRAP_SAVED` says, as after `syscall_entry`); from ring 0 (never
       the kernel's own doing) the common path, which finds it unexpected. */
    .p2align 4
    .global int80_entry
int80_entry:
    pushq ${door_int80}
    pushq ${int80_vector}
    testb $3, 24(%rsp)
    jz 1f
    swapgs
    jmp *TRAP_SAVED(%rip)
1:  jmp *TRAP_ENTRY(%rip)

    /* A system call's way back (see the contract above). */
    .global syscall_return
syscall_return:
    cmpq ${syscall_vector}, {vector_offset}(%rsp)
    jne 1f
    addq $40, %rsp          /* r15, r14, r13, r12: in place; r11: sysretq's rflags, below */
    popq %r10
    popq %r9
    popq %r8
    addq $8, %rsp           /* rbp */
    popq %rdi
    popq %rsi
    popq %rdx
    addq $16, %rsp          /* rcx: sysretq's rip, below; rbx */
    popq %rax
    movq 16(%rsp), %rcx     /* rip (above vector and error code) */
    movq 32(%rsp), %r11     /* rflags */
    movq 40(%rsp), %rsp     /* rsp */
    swapgs
    sysretq
1:  addq $32, %rsp          /* r15, r14, r13, r12 */
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    addq $8, %rsp           /* rbp */
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    addq $8, %rsp           /* rbx */
    popq %rax
    addq $16, %rsp          /* vector and error code */
    swapgs
    iretq

    .p2align 4
    .global trap_common_smp
trap_common_smp:
    FROM_STUB trap_dispatch_smp
    jmp trap_return
    .global trap_saved_smp
trap_saved_smp:
    FROM_SYSCALL syscall_arrived_smp

    .global trap_common_doors
trap_common_doors:
    FROM_STUB doors_arrived
    jmp trap_return
    .global trap_saved_doors
trap_saved_doors:
    PUSH_REGISTERS
    movl $1, %esi
    call doors_arrived
    jmp trap_return

    "#,
    user_ds = const USER_DATA_SELECTOR,
    user_cs = const USER_CODE_SELECTOR,
    syscall_vector = const SYSCALL_VECTOR,
    pf_vector = const PF_VECTOR,
    ud_vector = const UD_VECTOR,
    int80_vector = const INT80_VECTOR,
    rflags_if = const RFLAGS_IF,
    door_syscall = const DOOR_SYSCALL,
    door_syscall_pvm = const DOOR_SYSCALL_PVM,
    door_int80 = const DOOR_INT80,
    door_int80_pvm = const DOOR_INT80_PVM,
    vector_offset = const offset_of!(TrapFrame, vector),
    user_rsp = const USER_RSP_OFFSET,
    syscall_rsp = const SYSCALL_RSP_OFFSET,
    options(att_syntax)
);

extern "C" {
    fn syscall_entry();
    fn pf_syscall_entry();
    fn int80_entry();
    fn ud_int80_entry();
}

/// Where gates 14 (#PF) and 6 (#UD) lead on a host whose `syscall` and `int 0x80` from ring 3
/// arrive as those faults (doors.rs): entries that recognise the two doors in a few
/// instructions and join the architectural doors' paths, everything else going on as from the
/// stubs.
pub fn recovered_door_entries() -> (u64, u64) {
    (pf_syscall_entry as *const () as u64, ud_int80_entry as *const () as u64)
}

/// Where gate 0x80 (`int 0x80`) leads: the path of a system call, for one from ring 3.
pub fn int80_entry_address() -> u64 {
    int80_entry as *const () as u64
}

const STAR_MSR: u32 = 0xc000_0081;
const LSTAR_MSR: u32 = 0xc000_0082;
const SFMASK_MSR: u32 = 0xc000_0084;
/// RFLAGS bits cleared on `syscall`: TF, IF, DF, IOPL, NT, AC (as Linux).
pub const SYSCALL_RFLAGS_MASK: u64 = 0x4_7700;

/// The address `syscall` jumps to (LSTAR).
pub fn syscall_entry_address() -> u64 {
    syscall_entry as *const () as u64
}

/// Enables `syscall`/`sysret`: EFER.SCE, STAR selectors, LSTAR, SFMASK.
///
/// On PVM hosts `syscall` does not reach ring 0 (see the README's "Host kinds"): the CPU stays
/// in ring 3 at LSTAR and faults fetching the supervisor page there; `trap.rs` recognises that
/// #PF and completes the call (the "recovered" path).
pub fn init_syscall() {
    let star = (u64::from(USER_CODE32_SELECTOR) << 48) | (u64::from(KERNEL_CODE_SELECTOR) << 32);
    // SAFETY: these MSRs only configure the syscall instruction; the selectors match the GDT
    // (sysret: CS = 0x23 + 16 = 0x33, SS = 0x23 + 8 = 0x2b; syscall: CS 0x10, SS 0x18).
    unsafe {
        Msr::new(STAR_MSR).write(star);
        Msr::new(LSTAR_MSR).write(syscall_entry_address());
        Msr::new(SFMASK_MSR).write(SYSCALL_RFLAGS_MASK);
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}
