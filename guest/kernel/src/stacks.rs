//! The kernel's stacks: one per process slot, each above an unmapped guard page (so that an
//! overflow faults instead of corrupting its neighbour), and the table of every guard page the
//! kernel has (boot stack, IST stacks, process stacks) that boot unmaps and `fatal.rs` names.

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU64;

use lde_kcore::proc::MAX_PROCS;

use crate::arch::{boot, gdt};

/// Size of each process's kernel stack.
pub const KSTACK_SIZE: usize = 16 * 1024;

/// The RSP `switch` saved for each slot while its process does not run (or `exec` built for a
/// new one). Not in `process::KERNEL`: `switch` writes it through a raw pointer, which a
/// `Global` does not hand out.
static SAVED_RSP: [AtomicU64; MAX_PROCS] = [const { AtomicU64::new(0) }; MAX_PROCS];

/// The scheduler's RSP while a process runs (saved by `switch` into the process).
pub static SCHED_RSP: AtomicU64 = AtomicU64::new(0);

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
