//! Per-CPU data, reached through GS as Linux reaches its own: while a processor runs the
//! kernel its GS base holds the address of its [`PerCpu`], whose first field is that address
//! again (`mov %gs:0, reg` gives a pointer Rust can use). While it runs a process, GS base holds
//! the process's (ring 3 may change it with `wrgsbase` where the host lets it, as PVM does), and
//! the kernel's waits in IA32_KERNEL_GS_BASE: every way into the kernel from ring 3 swaps the
//! two with `swapgs`, and every way back swaps them again (entry.rs). The scheduler saves and
//! restores a process's GS base from IA32_KERNEL_GS_BASE accordingly (`cpu::SegmentBases`).
//!
//! A processor touches only its own `PerCpu` (interrupts off in the kernel), except for the
//! atomics other processors may read.

use core::cell::Cell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use lde_kcore::mptable::MAX_CPUS;
use x86_64::registers::model_specific::Msr;

use super::cpu::SegmentBases;

const GS_BASE_MSR: u32 = 0xc000_0101;
const KERNEL_GS_BASE_MSR: u32 = 0xc000_0102;

/// What one processor keeps for itself.
#[repr(C, align(64))]
pub struct PerCpu {
    /// Its own address (`%gs:0`).
    this: Cell<u64>,
    /// The kernel stack `syscall_entry` switches to: the running process's (= TSS.RSP0).
    syscall_rsp: Cell<u64>,
    /// Where `syscall_entry` parks the process's RSP while it switches stacks.
    user_rsp: Cell<u64>,
    /// Its number: 0 for the bootstrap processor, then in the order they were started.
    index: Cell<usize>,
    /// The address of RSP0 in its TSS (the TSS is packed: RSP0 is not 8-byte aligned).
    tss_rsp0: Cell<u64>,
    /// Its scheduler's RSP while a process runs on it (written by `switch`).
    sched_rsp: AtomicU64,
    /// The slot of the process it runs, [`NO_PROCESS`] if none.
    current: Cell<usize>,
    /// When it last returned to ring 3 (user time is charged from there).
    user_entry: Cell<u64>,
    /// When its last process gave up the CPU (a switch is timed from there; 0 once its
    /// scheduler idled since).
    switch_out: Cell<u64>,
    /// The FS and GS bases it holds for ring 3 (the last process's), so that switching in
    /// writes only what differs.
    bases: Cell<SegmentBases>,
    /// The page tables it has loaded (CR3), which other processors read to know whom a TLB
    /// shootdown concerns (0 until it loads any through `paging`).
    cr3: AtomicU64,
}

/// Offsets the entry code (entry.rs) uses with `%gs:`.
pub const SYSCALL_RSP_OFFSET: usize = offset_of!(PerCpu, syscall_rsp);
pub const USER_RSP_OFFSET: usize = offset_of!(PerCpu, user_rsp);
// scripts/lde.gdb's `$lde_syscall_rsp_offset`.
const _: () = assert!(SYSCALL_RSP_OFFSET == 8);

// SAFETY: a processor reaches only its own `PerCpu` through `this` (its GS base), with
// interrupts off in the kernel, so its `Cell`s are never touched by two contexts at once;
// `sched_rsp` is atomic. The array is only ever shared, never moved.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            this: Cell::new(0),
            syscall_rsp: Cell::new(0),
            user_rsp: Cell::new(0),
            index: Cell::new(0),
            tss_rsp0: Cell::new(0),
            sched_rsp: AtomicU64::new(0),
            current: Cell::new(NO_PROCESS),
            user_entry: Cell::new(0),
            switch_out: Cell::new(0),
            bases: Cell::new(SegmentBases { fs: 0, gs: 0 }),
            cr3: AtomicU64::new(0),
        }
    }

    #[inline(always)]
    pub fn set_current(&self, slot: Option<usize>) {
        self.current.set(slot.unwrap_or(NO_PROCESS));
    }

    /// Where `switch` saves (and resumes) its scheduler's RSP.
    #[inline(always)]
    pub fn sched_rsp(&self) -> &AtomicU64 {
        &self.sched_rsp
    }

    /// When its last process gave up the CPU, cleared.
    #[inline(always)]
    pub fn take_switch_out(&self) -> u64 {
        self.switch_out.replace(0)
    }

    #[inline(always)]
    pub fn set_switch_out(&self, tsc: u64) {
        self.switch_out.set(tsc);
    }

    #[inline(always)]
    pub fn bases(&self) -> SegmentBases {
        self.bases.get()
    }

    #[inline(always)]
    pub fn set_bases(&self, bases: SegmentBases) {
        self.bases.set(bases);
    }

    /// Sets the stack a trap from ring 3 (TSS.RSP0) and `syscall` switch to.
    ///
    /// # Safety
    /// Interrupts off; `top` is the top of a mapped kernel stack that stays valid until the next
    /// call.
    #[inline(always)]
    pub unsafe fn set_kernel_stack(&self, top: u64) {
        // SAFETY: `tss_rsp0` points into this processor's own TSS (set by `init`), which only it
        // writes, with interrupts off (the caller's contract); the CPU reads it only on a trap.
        unsafe { (self.tss_rsp0.get() as *mut u64).write_unaligned(top) };
        self.syscall_rsp.set(top);
    }
}

/// Every processor's `PerCpu`, exported by name for scripts/lde.gdb (which reads processor 0's
/// `syscall_rsp` at [`SYSCALL_RSP_OFFSET`]).
#[no_mangle]
static LDE_PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The running processor's `PerCpu`.
///
/// Not `pure`: the compiler must read GS each time, because the code that calls this may have
/// been moved to another processor since it last did (a process gives up the CPU in the kernel
/// and resumes wherever it is picked next).
#[inline(always)]
pub fn this() -> &'static PerCpu {
    let p: *const PerCpu;
    // SAFETY: GS base holds this processor's `PerCpu` whenever the kernel runs (`init`, and
    // the entry code's `swapgs`), and its first field is its address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, preserves_flags, readonly));
        &*p
    }
}

/// `current` when the processor runs no process.
const NO_PROCESS: usize = usize::MAX;

/// Reads the 8-byte field at `offset` of the running processor's `PerCpu` in one instruction
/// (`mov %gs:offset`), for the hottest paths (a read through [`this`] takes two).
macro_rules! read_field {
    ($offset:expr) => {{
        let value: u64;
        // SAFETY: GS base holds this processor's `PerCpu` whenever the kernel runs (see `this`);
        // `$offset` is that of one of its 8-byte `Cell` fields, which only this processor uses.
        unsafe {
            core::arch::asm!(
                "mov {}, gs:[{offset}]",
                out(reg) value,
                offset = const $offset,
                options(nostack, preserves_flags, readonly)
            );
        }
        value
    }};
}

/// The running processor's number.
#[inline(always)]
pub fn index() -> usize {
    read_field!(offset_of!(PerCpu, index)) as usize
}

/// The slot of the process the running processor runs, if any.
#[inline(always)]
pub fn current() -> Option<usize> {
    let slot = current_slot();
    (slot != NO_PROCESS).then_some(slot)
}

/// [`current`] as it is kept: a slot, or `NO_PROCESS`.
#[inline(always)]
pub fn current_slot() -> usize {
    read_field!(offset_of!(PerCpu, current)) as usize
}

/// When the running processor last returned to ring 3 (user time is charged from there).
#[inline(always)]
pub fn user_entry() -> u64 {
    read_field!(offset_of!(PerCpu, user_entry))
}

/// The page tables the running processor has loaded, as `paging` last noted them.
#[inline(always)]
pub fn cr3() -> u64 {
    read_field!(offset_of!(PerCpu, cr3))
}

/// Notes the page tables the running processor loads (before it loads them: a shootdown that
/// reads the old value finds this processor still holding them, and waits for its answer).
#[inline(always)]
pub fn set_cr3(root: u64) {
    this().cr3.store(root, Ordering::Release);
}

/// The page tables processor `index` has loaded (for a TLB shootdown).
pub fn cr3_of(index: usize) -> u64 {
    LDE_PER_CPU[index].cr3.load(Ordering::Acquire)
}

/// Notes that the running processor returns to ring 3 at TSC `tsc`.
#[inline(always)]
pub fn set_user_entry(tsc: u64) {
    // SAFETY: as in `read_field!`; the field is the `Cell<u64>` `user_entry`.
    unsafe {
        core::arch::asm!(
            "mov gs:[{offset}], {}",
            in(reg) tsc,
            offset = const offset_of!(PerCpu, user_entry),
            options(nostack, preserves_flags)
        );
    }
}

/// Makes `LDE_PER_CPU[index]` this processor's: its GS base, with the processes' GS base (0 until one
/// changes it) in IA32_KERNEL_GS_BASE. `tss_rsp0` is the address of RSP0 in its TSS.
///
/// # Safety
/// Once per processor, by that processor, interrupts off, before anything calls [`this`].
pub unsafe fn init(index: usize, tss_rsp0: u64) {
    let cpu = &LDE_PER_CPU[index];
    let address = cpu as *const PerCpu as u64;
    cpu.this.set(address);
    cpu.index.set(index);
    cpu.tss_rsp0.set(tss_rsp0);
    cpu.cr3.store(x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64(), Ordering::Release);
    // SAFETY: the address is this processor's `PerCpu`, a static that lives for ever; the
    // kernel GS base MSR only matters to `swapgs`.
    unsafe {
        Msr::new(GS_BASE_MSR).write(address);
        Msr::new(KERNEL_GS_BASE_MSR).write(0);
    }
}

// Every processor's `PerCpu` has its figures in the stats page (`StatsPage::cpus`), indexed by
// its number modulo this count, which is then the number itself.
const _: () = assert!(MAX_CPUS == lde_abi::stats::MAX_CPUS);
