//! The kernel's stacks: one per process slot, each above an unmapped guard page (so that an
//! overflow faults instead of corrupting its neighbour), and the table of every guard page the
//! kernel has (boot stack, IST stacks, process stacks) that boot unmaps and `fatal.rs` names.

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU64;

use lde_kcore::proc::MAX_PROCS;

use crate::arch::{boot, gdt};

/// Where the application processors' stacks lie: low RAM that the boot no longer needs (the
/// boot data and the command line at 0x2_0000 have been copied), mapped with 4 KiB pages so
/// that each stack can have a guard page, and out of the way of the frame allocator (which
/// hands out RAM above the kernel image). Per processor: a guard page, its stack, a guard page,
/// its IST stack (NMI, #DF and #MC share it).
pub const AP_STACKS_ADDR: u64 = 0x2_1000;
/// Size of an application processor's stack: its scheduler runs there, and may start programs
/// (`exec::spawn_pending`) as processor 0's does on the boot stack.
pub const AP_STACK_SIZE: u64 = 32 * 1024;
/// Size of an application processor's IST stack.
pub const AP_IST_SIZE: u64 = 4 * 1024;
const AP_STRIDE: u64 = GUARD_SIZE as u64 + AP_STACK_SIZE + GUARD_SIZE as u64 + AP_IST_SIZE;
/// End (exclusive) of the application processors' stacks.
pub const AP_STACKS_END: u64 = AP_STACKS_ADDR + gdt::MAX_APS as u64 * AP_STRIDE;
const _: () = assert!(AP_STACKS_END <= lde_kcore::mptable::MP_FLOATING_ADDR);
const _: () = assert!(AP_STACKS_ADDR >= crate::arch::ap_boot::TRAMPOLINE_ADDR + 4096);

/// Top (exclusive) of application processor `ap`'s stack (`ap` counts from 0).
pub fn ap_stack_top(ap: usize) -> u64 {
    AP_STACKS_ADDR + ap as u64 * AP_STRIDE + GUARD_SIZE as u64 + AP_STACK_SIZE
}

/// Top (exclusive) of application processor `ap`'s IST stack.
pub fn ap_ist_top(ap: usize) -> u64 {
    AP_STACKS_ADDR + (ap as u64 + 1) * AP_STRIDE
}

/// The guard pages below application processor `ap`'s two stacks.
pub fn ap_guards(ap: usize) -> [u64; 2] {
    let base = AP_STACKS_ADDR + ap as u64 * AP_STRIDE;
    [base, base + GUARD_SIZE as u64 + AP_STACK_SIZE]
}

/// Size of each process's kernel stack.
pub const KSTACK_SIZE: usize = 16 * 1024;

/// The RSP `switch` saved for each slot while its process does not run (or `exec` built for a
/// new one). Not in `process::KERNEL`: `switch` writes it through a raw pointer, which a
/// `Global` does not hand out.
static SAVED_RSP: [AtomicU64; MAX_PROCS] = [const { AtomicU64::new(0) }; MAX_PROCS];

/// Slot `slot`'s saved RSP.
pub fn saved_rsp(slot: usize) -> &'static AtomicU64 {
    &SAVED_RSP[slot]
}

/// Bytes per slot: an unmapped guard page, then the stack.
const KSTACK_STRIDE: usize = GUARD_SIZE + KSTACK_SIZE;
const GUARD_SIZE: usize = 4096;

#[repr(C, align(4096))]
struct KernelStacks(UnsafeCell<[[u8; KSTACK_STRIDE]; MAX_PROCS]>);

// SAFETY: no Rust reference to the bytes is ever made: the CPU uses them as stacks and
// `exec::prepare_kernel_stack` writes a slot's stack through raw pointers while it is not running.
unsafe impl Sync for KernelStacks {}

/// The kernel stacks, one per process slot, each above its own guard page (unmapped at boot by
/// `arch::boot::protect_kernel`, so an overflow faults instead of corrupting the neighbour).
#[link_section = ".bss.stacks"] // linker.ld: guard pages in the first 2 MiB
static KSTACKS: KernelStacks = KernelStacks(UnsafeCell::new([[0; KSTACK_STRIDE]; MAX_PROCS]));

/// Top (exclusive) of slot `slot`'s kernel stack.
pub fn kstack_top(slot: usize) -> u64 {
    KSTACKS.0.get() as u64 + ((slot + 1) * KSTACK_STRIDE) as u64
}

/// The guard page below slot `slot`'s kernel stack.
pub fn kstack_guard(slot: usize) -> u64 {
    KSTACKS.0.get() as u64 + (slot * KSTACK_STRIDE) as u64
}

/// Every guard page (unmapped, below a kernel stack) with the name of its stack: the boot
/// stack, the IST stacks and one kernel stack per process slot.
pub fn guard_pages() -> [(&'static str, u64); 4 + MAX_PROCS] {
    let ist = gdt::ist_guards();
    core::array::from_fn(|i| match i {
        0 => ("boot stack", boot::boot_stack_guard()),
        1..=3 => ist[i - 1],
        _ => ("kernel stack of process slot", kstack_guard(i - 4)),
    })
}
