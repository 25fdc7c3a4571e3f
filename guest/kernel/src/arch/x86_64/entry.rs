//! Every way into ring 0 and back: the 256 IDT entry stubs, the common path `trap_common` that
//! saves a [`TrapFrame`] and calls `trap_dispatch`, its twin `trap_saved` for system calls, and
//! the exit path `trap_return` (`iretq`). The system-call doors' own entries and their way back
//! (`syscall_return`, with `sysretq` for a `syscall`) are in `syscall_entry.rs`.
//!
//! # Entry contract
//! On the way in, before any Rust code runs (Linux's `entry_64.S` makes the same promises):
//! - RFLAGS = [`KERNEL_RFLAGS`] (0x2): DF clear, so `rep movs/stos` and the compiler's
//!   memcpy/memset run forwards; AC, TF and NT clear; IOPL 0; IF clear. Trap delivery clears
//!   only IF, TF and NT and `syscall` only what SFMASK names, so a process's DF and AC would
//!   otherwise reach the kernel (`tests/attack.rs` sets each flag before every kind of entry);
//! - RSP is a kernel stack: TSS.RSP0 of the running process (traps from ring 3), an IST stack
//!   (NMI, #DF, #MC), the interrupted kernel stack (traps in ring 0), or the processor's
//!   syscall stack (`syscall`: percpu.rs, the same top as TSS.RSP0);
//! - GS base is the kernel's (the processor's `PerCpu`), swapped in by `swapgs` when the trap
//!   came from ring 3 (except on the NMI path, which uses none: an NMI can arrive between a
//!   `swapgs` and the instruction that leaves);
//! - the full [`TrapFrame`] of the interrupted context lies at RSP, 16-byte aligned;
//! - interrupts are off (interrupt gates and SFMASK clear IF).
//!
//! On the way out, every register the frame holds is restored from the (possibly changed)
//! frame and `iretq` leaves; a system call's frame leaves through `syscall_return`
//! (syscall_entry.rs), which restores only what the kernel's code does not give back itself.

use core::arch::global_asm;
use core::mem::offset_of;

pub use super::frame::TrapFrame;
use super::frame::RFLAGS_VM;

/// RFLAGS while the kernel runs: only the always-one bit 1.
pub const KERNEL_RFLAGS: u64 = 0x2;

/// Size of each vector's entry stub; stub `v` is at `trap_stubs + v * TRAP_STUB_SIZE`.
pub const TRAP_STUB_SIZE: u64 = 16;

// Stub contract: entered by the CPU with the hardware frame (and for vectors 8, 10-14, 17, 21,
// 29 and 30 an error code) on the stack. Each stub makes the frame uniform (a dummy error code
// where the CPU pushes none), pushes its vector and jumps to the common path `TRAP_ENTRY` names
// (`trap_common`, or `trap_common_smp` once other processors run). The `.org` makes the
// assembler fail if a stub outgrows its 16 bytes.
global_asm!(
    r#"
    .text
    .p2align 4
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .org trap_stubs + vec * {stub_size}, 0x90
    .if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30
    pushq $vec
    .else
    pushq $0
    pushq $vec
    .endif
    jmp *TRAP_ENTRY(%rip)
    .set vec, vec + 1
    .endr

    .data
    .p2align 3
    .global TRAP_ENTRY
TRAP_ENTRY:
    .quad trap_common
    .global TRAP_SAVED
TRAP_SAVED:
    .quad trap_saved
    "#,
    stub_size = const TRAP_STUB_SIZE,
    options(att_syntax)
);

// The common paths come in three pairs, one per dispatcher: `trap_common`/`trap_saved` call
// `trap_dispatch`/`syscall_arrived` (one processor), `trap_common_smp`/`trap_saved_smp` call
// `trap_dispatch_smp`/`syscall_arrived_smp` (several: kernel_lock.rs),
// `trap_common_doors`/`trap_saved_doors` call `doors_arrived` (the boot's self-test of the
// doors, doors.rs). `TRAP_ENTRY` and `TRAP_SAVED` name the pair in use.
//
// `trap_common` contract: entered from a stub with vector and error code above the CPU frame.
// Pushes the 15 general registers so that RSP points at a complete TrapFrame (16-byte aligned:
// the CPU aligned its frame and 22 qwords are an even count) and sets RFLAGS to KERNEL_RFLAGS
// (the entry contract: DF, AC, TF, NT clear). If the frame came from ring 3 (CPL 3 in CS, or
// RFLAGS.VM: `TrapFrame::came_from_user`), `swapgs` puts the kernel's GS base in place. Calls
// the dispatcher with the System V ABI: `(&mut TrapFrame, from_user: bool)`. `trap_saved` is the
// same after `syscall_entry`, which swapped already, for a system call from ring 3: its
// dispatcher takes `(&mut TrapFrame)` (`trap_saved_doors` passes from_user = 1 too).
//
// `trap_return` contract: RSP points at a complete TrapFrame (after the dispatcher, or on a new
// process's kernel stack), the kernel's GS base in place. Restores the 15 registers, drops
// vector and error code, and leaves with `iretq`, after `swapgs` if the frame returns to ring
// 3. No `syscall` frame comes here (they leave through `syscall_return`; the doors' self-test
// turns its one into an `int 0x80` frame).
// (An NMI or #MC between the `swapgs` and the exit runs on its IST stack with the user's GS
// base, and the NMI path touches no per-CPU data.)
global_asm!(
    r#"
    .macro SWAPGS_IF_USER cs, rflags
    testb $3, \cs(%rsp)
    jnz 1f
    testl ${rflags_vm}, \rflags(%rsp)
    jz 2f
1:  swapgs
2:
    .endm

    .macro PUSH_REGISTERS
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    pushq ${kernel_rflags}
    popfq
    movq %rsp, %rdi
    .endm

    /* A trap from a stub: the registers, then `swapgs` and from_user = 1 for a frame from
       ring 3 (from_user = 0 otherwise), then the dispatcher. */
    .macro FROM_STUB dispatch
    PUSH_REGISTERS
    xorl %esi, %esi
    testb $3, {cs_in_frame}(%rsp)
    jnz 1f
    testl ${rflags_vm}, {rflags_in_frame}(%rsp)
    jz 2f
1:  swapgs
    movl $1, %esi
2:  call \dispatch
    .endm

    /* After `syscall_entry` (already swapped): a system call from ring 3, dispatched as one.
       Its frame holds what `syscall_return` restores (RAX, RCX, RDX, RSI, RDI, R8-R11: the
       registers the kernel's code may change); the slots of RBX, RBP and R12-R15 are skipped,
       as the kernel's code gives those registers back as it found them (the System V ABI, see
       `syscall_return`) and no reader of a system call's frame looks at them (a kill or a
       fatal fault shows a frame `trap_common` saved whole): three emulated instructions
       fewer per call. */
    .macro FROM_SYSCALL dispatch
    pushq %rax
    subq $8, %rsp           /* rbx */
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    subq $8, %rsp           /* rbp */
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    subq $32, %rsp          /* r12, r13, r14, r15 */
    pushq ${kernel_rflags}
    popfq
    movq %rsp, %rdi
    call \dispatch
    jmp syscall_return
    .endm

    .text
    .global trap_saved
trap_saved:
    FROM_SYSCALL syscall_arrived

    .global trap_common
trap_common:
    FROM_STUB trap_dispatch

    .global trap_return
trap_return:
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp       /* vector and error code */
    SWAPGS_IF_USER 8, 16
    iretq

    /* Where a new process's first switch lands once other processors run: the big kernel
       lock is released (kernel_lock.rs), as `trap_dispatch_smp` would on the way out. */
    .global new_process_smp
new_process_smp:
    call kernel_lock_leave
    jmp trap_return
    "#,
    kernel_rflags = const KERNEL_RFLAGS,
    cs_in_frame = const offset_of!(TrapFrame, cs),
    rflags_in_frame = const offset_of!(TrapFrame, rflags),
    rflags_vm = const RFLAGS_VM,
    options(att_syntax)
);

extern "C" {
    /// The first of 256 entry stubs, `TRAP_STUB_SIZE` bytes apart.
    static trap_stubs: [u8; 0];
    /// The one exit path (see its contract).
    fn trap_return();
    fn trap_common();
    fn trap_saved();
    fn trap_common_smp();
    fn trap_saved_smp();
    fn trap_common_doors();
    fn trap_saved_doors();
    fn new_process_smp();
    /// Where the stubs and `syscall_entry` go on (see their contracts).
    static mut TRAP_ENTRY: u64;
    static mut TRAP_SAVED: u64;
}

/// Where a new process's first switch lands (`switch::new_process_stack`): `trap_return`, or
/// once other processors run, `new_process_smp`, which releases the big kernel lock first.
pub fn new_process_return() -> u64 {
    // SAFETY: a plain read of a pointer only `use_common_path` writes, before other processors
    // run.
    let smp = unsafe { core::ptr::addr_of!(TRAP_ENTRY).read_volatile() } == trap_common_smp as *const () as u64;
    if smp {
        new_process_smp as *const () as u64
    } else {
        trap_return as *const () as u64
    }
}

/// The common paths a trap may take (see their contracts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommonPath {
    /// One processor: `trap_dispatch`.
    Single,
    /// Several processors: `trap_dispatch_smp`, inside the big kernel lock.
    Smp,
    /// The boot's self-test of the doors: `doors_arrived`.
    Doors,
}

/// Sends every trap from now on down `path`.
///
/// # Safety
/// Interrupts are off and no other processor runs; for [`CommonPath::Smp`], the caller holds the
/// big kernel lock (kernel_lock.rs) from here on whenever it runs the kernel; for
/// [`CommonPath::Doors`], only the self-test's traps can arrive until it is set back.
pub unsafe fn use_common_path(path: CommonPath) {
    let (entry, saved): (unsafe extern "C" fn(), unsafe extern "C" fn()) = match path {
        CommonPath::Single => (trap_common, trap_saved),
        CommonPath::Smp => (trap_common_smp, trap_saved_smp),
        CommonPath::Doors => (trap_common_doors, trap_saved_doors),
    };
    // SAFETY: the caller's contract: nothing else reads or writes the two pointers now; both
    // name entry code of this file (no trap can arrive between the two writes: interrupts off).
    unsafe {
        core::ptr::addr_of_mut!(TRAP_ENTRY).write_volatile(entry as *const () as u64);
        core::ptr::addr_of_mut!(TRAP_SAVED).write_volatile(saved as *const () as u64);
    }
}

/// The address of vector `vector`'s entry stub.
pub fn stub_address(vector: usize) -> u64 {
    // SAFETY: only the address of the asm symbol is taken.
    let base = unsafe { trap_stubs.as_ptr() } as u64;
    base + vector as u64 * TRAP_STUB_SIZE
}
