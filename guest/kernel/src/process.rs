//! The kernel's state, one global, [`KERNEL`]: the process table (`lde_kcore::proc`'s, whose
//! every slot holds one process whole: the host-tested bookkeeping and this file's
//! [`Machine`] state), the page frames, and what the scheduler and accounting keep between
//! processes. The processes' kernel stacks are `stacks.rs`; what each processor keeps for
//! itself (the process it runs, its scheduler's stack) is `arch::percpu`.
//!
//! Loading a program is `exec.rs`; giving up and taking the CPU is `sched.rs`.

use lde_kcore::elf::MAX_SEGMENTS;
use lde_kcore::proc::{MachineState, Table, MAX_PROCS};

use crate::arch::cpu::SegmentBases;
use crate::arch::fpu::FxArea;
use crate::arch::paging::{AddressSpace, PageFlags};
use crate::arch::percpu;
use crate::mm::Frames;
use crate::stats::Stats;
use crate::sync::Global;

/// What the hardware holds for a process while it runs, kept in its slot of the process table
/// while it does not: its address space (with the parts mapped on first touch) and registers.
pub struct Machine {
    /// Its page tables (`None` in a free slot, and once an ended process's memory is freed).
    pub space: Option<AddressSpace>,
    /// x87/SSE registers while the process is not running.
    pub fx: FxArea,
    /// FS and GS bases while the process is not running.
    pub bases: SegmentBases,
    /// Zero-filled parts of the program (BSS) mapped only when first touched.
    pub demand_zero: [Option<DemandZero>; DEMAND_ZERO_REGIONS],
}

impl MachineState for Machine {
    const FREE: Self = Machine {
        space: None,
        fx: FxArea::INITIAL,
        bases: SegmentBases { fs: 0, gs: 0 },
        demand_zero: [None; DEMAND_ZERO_REGIONS],
    };
}

/// Demand-zero regions a process may have: one per ELF segment, and its stack below the top
/// page.
pub const DEMAND_ZERO_REGIONS: usize = MAX_SEGMENTS + 1;

/// Pages `[start, end)` that read as zero: each gets a zeroed frame when the process first
/// touches it (a #PF on a page that is not present), so that loading a program with a large
/// BSS does not keep interrupts off while all of it is mapped.
#[derive(Clone, Copy, Debug)]
pub struct DemandZero {
    pub start: u64,
    pub end: u64,
    pub flags: PageFlags,
}

/// Everything the kernel keeps.
pub struct Kernel {
    /// Every process, each with its machine state.
    pub procs: Table<Machine>,
    /// The RAM the kernel gives out a page at a time.
    pub frames: Frames,
    /// Where programs come from, and the command line's that are still to start.
    pub programs: Programs,
    /// What failed, for the exit code.
    pub failures: Failures,
    /// Whether a processor has entered a process yet (for the first-user milestone).
    pub entered_user: bool,
    /// The earliest deadline of a sleeping process.
    pub next_wake: Option<u64>,
    /// The stats page (the only way to it: `stats::Stats`).
    pub stats: Stats,
}

/// Where programs come from.
pub struct Programs {
    /// The initrd (a cpio archive of the programs; empty without one).
    pub initrd: &'static [u8],
    /// The rest of the command line from the next `lde.run` word to start (see
    /// [`crate::config::next_run`]).
    pub runs: &'static str,
}

/// What failed, for the exit code.
pub struct Failures {
    /// Programs of the command line that could not be started.
    pub spawns: u32,
    /// Processes that ended with a status other than 0 or were killed (counted when they end:
    /// their slot, and with it their end, is reused).
    pub processes: u32,
}

impl Failures {
    pub fn any(&self) -> bool {
        self.spawns > 0 || self.processes > 0
    }
}

impl Kernel {
    /// Charges the TSC cycles from this processor's last entry to ring 3 to `now` to the
    /// process in `slot`.
    pub fn charge_user_time(&mut self, slot: usize, now: u64) {
        let acct = &mut self.procs.get_mut(slot).acct;
        acct.user_cycles += now.saturating_sub(percpu::user_entry());
    }
}

/// The slot of the process this processor runs; system calls and traps from ring 3 always have
/// one.
#[inline(always)]
pub fn current() -> usize {
    // One test for both "a process runs" and "its slot is in the table" (`percpu`'s "none" is
    // no slot): the table's bounds checks on it then compile to nothing.
    let slot = percpu::current_slot();
    assert!(slot < MAX_PROCS, "a process is running");
    slot
}

/// The kernel's state (see [`Global::with`]).
pub static KERNEL: Global<Kernel> = Global::new(Kernel {
    procs: Table::new(),
    frames: Frames::empty(),
    programs: Programs { initrd: &[], runs: "" },
    failures: Failures { spawns: 0, processes: 0 },
    entered_user: false,
    next_wake: None,
    // SAFETY: the one `Stats`, in the one `Kernel`.
    stats: unsafe { Stats::new() },
});
