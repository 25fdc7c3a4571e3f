//! Trap entry: one stub per vector, one common path that saves a full [`TrapFrame`], and the
//! IDT that points every one of the 256 vectors at its stub.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use core::cell::UnsafeCell;

use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use super::gdt;

/// The registers of an interrupted context, as the common entry path leaves them on the stack.
///
/// Field order is memory order, lowest address first: the general registers in the reverse of
/// the order `trap_common` pushes them, then what each stub pushes (vector, then a dummy or the
/// CPU's error code), then what the CPU pushes (rip, cs, rflags, rsp, ss).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64, // pushed last by trap_common
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,    // pushed first by trap_common
    pub vector: u64, // pushed by the stub
    pub error: u64,  // pushed by the CPU, or a dummy 0 by the stub
    pub rip: u64,    // pushed by the CPU
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(size_of::<TrapFrame>().is_multiple_of(16));

impl TrapFrame {
    /// Whether the trap came from ring 3.
    pub fn came_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Size of each vector's entry stub; stub `v` is at `trap_stubs + v * TRAP_STUB_SIZE`.
const TRAP_STUB_SIZE: u64 = 16;

// Stub contract: entered by the CPU with the hardware frame (and for vectors 8, 10-14, 17, 21,
// 29 and 30 an error code) on the stack. Each stub makes the frame uniform (a dummy error code
// where the CPU pushes none), pushes its vector and jumps to `trap_common`. The `.org` makes
// the assembler fail if a stub outgrows its 16 bytes.
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
    jmp trap_common
    .set vec, vec + 1
    .endr
    "#,
    stub_size = const TRAP_STUB_SIZE,
    options(att_syntax)
);

// `trap_common` contract: entered from a stub (or `syscall_entry`) with vector and error code
// above the CPU frame. Pushes the 15 general registers so that RSP points at a complete
// TrapFrame (16-byte aligned: the CPU aligned its frame and 22 qwords are an even count), calls
// `trap_dispatch(&mut TrapFrame)` with the System V ABI, then restores every register from the
// (possibly changed) frame, drops vector and error code, and returns with `iretq` — or, for a
// frame whose vector is SYSCALL_VECTOR, with `sysretq` (the dispatcher turns that vector into
// another one when rip is not a user address, since sysretq would fault in ring 0 on it).
// `trap_return` is also where a new process's first switch lands.
global_asm!(
    r#"
    .text
    .global trap_common
trap_common:
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
    movq %rsp, %rdi
    call trap_dispatch
    .global trap_return
trap_return:
    cmpq ${syscall_vector}, {vector_offset}(%rsp)
    je 1f
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
    addq $16, %rsp
    iretq
1:  /* Back through sysretq: RCX = rip, R11 = rflags, RSP = the user's (IF stays 0 until sysretq). */
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    addq $8, %rsp        /* r11: becomes rflags */
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    addq $8, %rsp        /* rcx: becomes rip */
    popq %rbx
    popq %rax
    movq 16(%rsp), %rcx  /* rip */
    movq 32(%rsp), %r11  /* rflags */
    movq 40(%rsp), %rsp  /* rsp */
    sysretq
    "#,
    syscall_vector = const super::syscall::SYSCALL_VECTOR,
    vector_offset = const offset_of!(TrapFrame, vector),
    options(att_syntax)
);

// The offsets trap_common relies on: registers first, then vector, error, and the CPU frame.
const _: () = assert!(offset_of!(TrapFrame, r15) == 0);
const _: () = assert!(offset_of!(TrapFrame, rax) == 14 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, error) == 16 * 8);
const _: () = assert!(offset_of!(TrapFrame, rip) == 17 * 8);
const _: () = assert!(offset_of!(TrapFrame, ss) == 21 * 8);

/// One IDT gate (a 64-bit interrupt gate).
///
/// Hand-written rather than the `x86_64` crate's `InterruptDescriptorTable`, whose typed fields
/// keep the reserved vectors (15, 22–27, 31) out of reach; lde points all 256 at a stub.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    /// IST index (bits 0–2), type 0xE = interrupt gate (bits 8–11), DPL (13–14), present (15).
    options: u16,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

impl Gate {
    const MISSING: Gate = Gate { offset_low: 0, selector: 0, options: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// A present interrupt gate (IF cleared on entry) into kernel code at `handler`.
    fn interrupt(handler: u64, dpl: u16, ist: u16) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE_SELECTOR,
            options: 0x8e00 | (dpl << 13) | ist,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// Vectors that ring 3 may raise with `int n`: #BP (`int3`), #OF (`into`) and the `int 0x80`
/// system call door.
const USER_VECTORS: [u8; 3] = [3, 4, 0x80];

struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: written only by `init` on the one CPU with interrupts off; afterwards read by the CPU.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([Gate::MISSING; 256]));

extern "C" {
    /// The first of 256 entry stubs, `TRAP_STUB_SIZE` bytes apart (defined above in asm).
    static trap_stubs: [u8; 0];
}

/// Fills all 256 IDT gates and loads the IDT.
pub fn init() {
    // SAFETY: only the address of the asm symbol is taken.
    let base = unsafe { trap_stubs.as_ptr() } as u64;
    // SAFETY: interrupts are off and the IDT is not loaded yet: nothing else accesses it.
    let gates = unsafe { &mut *IDT.0.get() };
    for (vector, gate) in gates.iter_mut().enumerate() {
        let ist = match vector {
            2 => gdt::NMI_IST,
            8 => gdt::DOUBLE_FAULT_IST,
            18 => gdt::MACHINE_CHECK_IST,
            _ => 0,
        };
        let dpl = if USER_VECTORS.contains(&(vector as u8)) { 3 } else { 0 };
        *gate = Gate::interrupt(base + vector as u64 * TRAP_STUB_SIZE, dpl, ist);
    }
    let pointer =
        DescriptorTablePointer { limit: (size_of::<[Gate; 256]>() - 1) as u16, base: VirtAddr::from_ptr(IDT.0.get()) };
    // SAFETY: the IDT is a static whose 256 gates all point at valid entry stubs.
    unsafe { lidt(&pointer) };
}

/// Loads an empty IDT: the next exception cannot be delivered and the CPU triple-faults.
pub fn load_empty_idt() {
    let pointer = DescriptorTablePointer { limit: 0, base: VirtAddr::zero() };
    // SAFETY: deliberately breaks trap delivery; only the triple-fault test hook calls this.
    unsafe { lidt(&pointer) };
}
