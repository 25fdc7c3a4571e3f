//! The registers of an interrupted context as the entry path (entry.rs) saves them: the one
//! layout the asm, the dispatchers, the scheduler and GDB's `lde-trapframe` share.

use core::mem::{offset_of, size_of};

/// RFLAGS.VM: virtual-8086 mode.
pub const RFLAGS_VM: u64 = 1 << 17;

/// The registers of an interrupted context, as the entry path leaves them on the stack.
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
// The offsets the asm below relies on: registers first, then vector, error, and the CPU frame.
const _: () = assert!(offset_of!(TrapFrame, r15) == 0);
const _: () = assert!(offset_of!(TrapFrame, rax) == 14 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, error) == 16 * 8);
const _: () = assert!(offset_of!(TrapFrame, rip) == 17 * 8);
const _: () = assert!(offset_of!(TrapFrame, ss) == 21 * 8);

impl TrapFrame {
    /// Whether the trap came from ring 3: CPL 3 in CS, or virtual-8086 mode (RFLAGS.VM, whose
    /// CS is a real-mode segment; lde never enters it, but a 32-bit `iret` from ring 3 under
    /// some emulators can, and a fault there is the process's, never the kernel's).
    pub fn came_from_user(&self) -> bool {
        self.cs & 3 == 3 || self.rflags & RFLAGS_VM != 0
    }
}
