//! The stats page: the kernel's counters, per-process accounting and scheduling event log, in
//! guest memory where the host reads them without a VM exit.
//!
//! The kernel exports it as the symbol [`STATS_SYMBOL`]; the host finds its address in the
//! kernel ELF's symbol table. This file is the page's layout; [`protocol`] is how the kernel
//! writes it and the host reads it while it changes (a seqlock over the counters, a sequence
//! number per ring entry), both halves side by side.

pub mod protocol;

/// Name of the kernel symbol holding the [`StatsPage`].
pub const STATS_SYMBOL: &str = "LDE_STATS";
/// [`StatsPage::magic`]: "LDESTATS".
pub const STATS_MAGIC: u64 = u64::from_le_bytes(*b"LDESTATS");
/// [`StatsPage::version`]; bumped on any change of layout or meaning.
pub const STATS_VERSION: u32 = 4;
/// Process slots in the page.
pub const MAX_PROCS: usize = 16;
/// Longest process name kept.
pub const NAME_MAX: usize = 16;
/// System-call numbers counted (room beyond `syscall::COUNT`).
pub const CALLS_MAX: usize = 16;
/// Events in the ring (a power of two).
pub const EVENTS: usize = 16384;
/// Entries in the ring of ended processes (a power of two).
pub const ENDED: usize = 64;
/// Processors with figures of their own ([`StatsPage::cpus`]).
pub const MAX_CPUS: usize = 8;

/// Timer modes in [`StatsPage::timer_mode`].
pub const TIMER_NONE: u32 = 0;
pub const TIMER_PERIODIC: u32 = 1;
pub const TIMER_DEADLINE: u32 = 2;

/// Process states in [`ProcStats::state`].
pub const STATE_FREE: u32 = 0;
pub const STATE_READY: u32 = 1;
pub const STATE_RUNNING: u32 = 2;
pub const STATE_SLEEPING: u32 = 3;
pub const STATE_READING: u32 = 4;
pub const STATE_ZOMBIE: u32 = 5;
/// Blocked in `wait` until a child ends.
pub const STATE_WAITING: u32 = 6;
/// Blocked on a disk (`disk_read`, `disk_write`).
pub const STATE_DISK: u32 = 7;

/// How a process ended, in [`ProcStats::end`].
pub const END_NONE: u32 = 0;
pub const END_EXITED: u32 = 1;
pub const END_KILLED: u32 = 2;

/// `StatsPage::protection` bits.
pub const PROT_SMEP: u32 = 1 << 0;
pub const PROT_UMIP: u32 = 1 << 1;
/// SMAP is offered by the CPU (lde never turns it on).
pub const PROT_SMAP_OFFERED: u32 = 1 << 2;

/// `StatsPage::doors` codes.
pub const DOOR_UNTESTED: u32 = 0;
pub const DOOR_ARCHITECTURAL: u32 = 1;
pub const DOOR_RECOVERED: u32 = 2;
pub const DOOR_OTHER: u32 = 3;

/// Event kinds in [`Event::kind`].
pub const EV_SWITCH_IN: u8 = 1;
/// `arg`: why ([`OUT_YIELD`], …).
pub const EV_SWITCH_OUT: u8 = 2;
pub const EV_TICK: u8 = 3;
/// `arg`: the system-call number.
pub const EV_SYSCALL: u8 = 4;
/// `arg`: the vector (the process was killed).
pub const EV_FAULT: u8 = 5;
/// `arg`: what the process waits for ([`ON_SLEEP`], …).
pub const EV_BLOCK: u8 = 6;
/// `arg`: what it waited for, now come ([`ON_SLEEP`]: the time; [`ON_INPUT`]: input, by the
/// serial interrupt; [`ON_CHILD`]: a child ended; [`ON_DISK`]: a disk request ended, or the
/// disk came free).
pub const EV_WAKE: u8 = 7;
pub const EV_IDLE: u8 = 8;
/// `arg`: the exit status.
pub const EV_EXIT: u8 = 9;
/// `arg`: the new process's pid is `pid`; `arg` is the parent's pid (0 = the kernel).
pub const EV_SPAWN: u8 = 10;

/// What a process blocks on, in [`EV_BLOCK`] and [`EV_WAKE`]'s `arg`.
pub const ON_SLEEP: u32 = 0;
pub const ON_INPUT: u32 = 1;
pub const ON_CHILD: u32 = 2;
pub const ON_DISK: u32 = 3;

/// [`EV_SWITCH_OUT`] reasons.
pub const OUT_YIELD: u32 = 0;
pub const OUT_PREEMPT: u32 = 1;
pub const OUT_BLOCK: u32 = 2;
pub const OUT_END: u32 = 3;

/// One entry of the scheduling event log.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// 1 + the index of this event since boot (0 = never written).
    pub seq: u64,
    pub tsc: u64,
    pub kind: u8,
    /// The processor it happened on (0 = the bootstrap processor).
    pub cpu: u8,
    pub pid: u16,
    pub arg: u32,
}

/// One processor's figures.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// 1 once it runs processes (processor 0 from boot).
    pub online: u32,
    /// pid of the process it runs, 0 when none.
    pub current_pid: u32,
    /// Its timer interrupts.
    pub ticks: u64,
    /// Processes it switched to.
    pub switches: u64,
    /// TSC cycles its processes ran in ring 3 (added when each switches out).
    pub user_cycles: u64,
    /// TSC cycles it halted in the idle loop.
    pub idle_cycles: u64,
    /// Inter-processor interrupts it sent and took (reschedule IPIs, TLB shootdowns, and the
    /// boot's round-trip measurements).
    pub ipis_sent: u64,
    pub ipis_received: u64,
}

impl CpuStats {
    pub const EMPTY: CpuStats = CpuStats {
        online: 0,
        current_pid: 0,
        ticks: 0,
        switches: 0,
        user_cycles: 0,
        idle_cycles: 0,
        ipis_sent: 0,
        ipis_received: 0,
    };
}

/// One process slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStats {
    pub pid: u32,
    pub state: u32,
    pub name: [u8; NAME_MAX],
    /// Timer ticks that found it running.
    pub ticks: u64,
    /// Times it was switched in.
    pub scheduled: u64,
    /// Switches away because it yielded, slept or blocked.
    pub voluntary: u64,
    /// Switches away because its time slice ran out.
    pub involuntary: u64,
    /// Exceptions it raised (recovered system-call doors excluded).
    pub faults: u64,
    /// TSC cycles spent in ring 3.
    pub user_cycles: u64,
    /// System calls by number.
    pub syscalls: [u64; CALLS_MAX],
    /// [`END_NONE`], [`END_EXITED`] or [`END_KILLED`].
    pub end: u32,
    /// Exit status, or the killing vector.
    pub end_value: u32,
    /// The RIP of the killing trap.
    pub end_rip: u64,
    /// Disk requests it made.
    pub disk_requests: u64,
    /// Bytes it read from and wrote to disks.
    pub disk_bytes: u64,
    /// TSC cycles blocked on disks: from submitting each request to running again.
    pub disk_wait_cycles: u64,
}

impl ProcStats {
    pub const EMPTY: ProcStats = ProcStats {
        pid: 0,
        state: STATE_FREE,
        name: [0; NAME_MAX],
        ticks: 0,
        scheduled: 0,
        voluntary: 0,
        involuntary: 0,
        faults: 0,
        user_cycles: 0,
        syscalls: [0; CALLS_MAX],
        end: END_NONE,
        end_value: 0,
        end_rip: 0,
        disk_requests: 0,
        disk_bytes: 0,
        disk_wait_cycles: 0,
    };

    /// The name as text (up to its first NUL).
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_MAX);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// A process's final accounting, in the ring of ended processes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    /// 1 + the index of this entry since boot (0 = never written or being rewritten).
    pub seq: u64,
    pub proc: ProcStats,
}

/// The stats page.
///
/// Everything before `ended_written` is covered by `seq`; the two rings after it carry a
/// sequence number per entry instead, so a reader copies only what is new.
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
pub struct StatsPage {
    pub magic: u64,
    pub version: u32,
    /// `size_of::<StatsPage>()`.
    pub size: u32,
    /// Even when consistent, odd while the kernel updates the counters below.
    pub seq: u64,
    /// TSC frequency in Hz (0 until the kernel measured it).
    pub tsc_hz: u64,
    /// TSC when the kernel started.
    pub boot_tsc: u64,
    /// TSC at the last update.
    pub now_tsc: u64,
    pub timer_hz: u32,
    pub timer_mode: u32,
    /// Ticks per time slice.
    pub slice_ticks: u32,
    pub reserved_header: u32,
    /// Timer interrupts taken.
    pub ticks: u64,
    /// TSC when the timer was started and when it was stopped (0 while it runs): the span
    /// over which `ticks` should equal the elapsed time times `timer_hz`.
    pub timer_started_tsc: u64,
    pub timer_stopped_tsc: u64,
    /// Traps by vector (system-call doors included).
    pub traps: [u64; 256],
    pub syscall_arch: u64,
    pub syscall_recovered: u64,
    pub int80_arch: u64,
    pub int80_recovered: u64,
    /// System calls by number.
    pub calls: [u64; CALLS_MAX],
    /// Context switches (scheduler → process).
    pub switches: u64,
    pub kills: u64,
    pub spawned: u64,
    /// TSC cycles spent halted in the idle loop.
    pub idle_cycles: u64,
    /// TSC cycles the timer handler spent in the kernel, over `tick_count` ticks.
    pub tick_cycles: u64,
    pub tick_count: u64,
    /// TSC cycles from one process giving up the CPU to the next one being resumed (the
    /// scheduler's part of a context switch), over `switch_count` direct switches.
    pub switch_cycles: u64,
    pub switch_count: u64,
    /// Physical frames in use.
    pub frames_in_use: u64,
    /// 1 once every process has ended and the kernel is shutting down.
    pub finished: u32,
    pub exit_code: u32,
    /// `PROT_*` bits: the CPU protections the kernel turned on.
    pub protection: u32,
    /// How each system-call door arrived in the kernel's boot self-test: `DOOR_*` codes,
    /// `syscall` in bits 0-7, `int 0x80` in bits 8-15; for `DOOR_OTHER` the trap's vector is in
    /// bits 16-23 (`syscall`) and 24-31 (`int 0x80`).
    pub doors: u32,
    /// Disk requests submitted, and the bytes they read and wrote.
    pub disk_requests: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    /// Disk interrupts taken.
    pub disk_interrupts: u64,
    /// Processors running processes (1 without `lde.cpus`).
    pub cpus_online: u32,
    pub reserved: u32,
    /// The big kernel lock (used with several processors): acquisitions, acquisitions that
    /// found it held, and the spins those waited.
    pub lock_acquisitions: u64,
    pub lock_contended: u64,
    pub lock_spins: u64,
    /// TLB shootdown requests sent (one per processor asked; the boot's timed ones included).
    pub tlb_shootdowns: u64,
    pub cpus: [CpuStats; MAX_CPUS],
    pub procs: [ProcStats; MAX_PROCS],
    /// Processes ended since boot; the newest is at `(ended_written - 1) % ENDED`.
    pub ended_written: u64,
    pub ended: [Ended; ENDED],
    /// Events written since boot; the newest is at `(events_written - 1) % EVENTS`.
    pub events_written: u64,
    pub events: [Event; EVENTS],
}

impl StatsPage {
    /// A zeroed page with its header filled in.
    pub const fn new() -> StatsPage {
        StatsPage {
            magic: STATS_MAGIC,
            version: STATS_VERSION,
            size: core::mem::size_of::<StatsPage>() as u32,
            seq: 0,
            tsc_hz: 0,
            boot_tsc: 0,
            now_tsc: 0,
            timer_hz: 0,
            timer_mode: TIMER_NONE,
            slice_ticks: 0,
            reserved_header: 0,
            ticks: 0,
            timer_started_tsc: 0,
            timer_stopped_tsc: 0,
            traps: [0; 256],
            syscall_arch: 0,
            syscall_recovered: 0,
            int80_arch: 0,
            int80_recovered: 0,
            calls: [0; CALLS_MAX],
            switches: 0,
            kills: 0,
            spawned: 0,
            idle_cycles: 0,
            tick_cycles: 0,
            tick_count: 0,
            switch_cycles: 0,
            switch_count: 0,
            frames_in_use: 0,
            finished: 0,
            exit_code: 0,
            protection: 0,
            doors: 0,
            disk_requests: 0,
            disk_read_bytes: 0,
            disk_write_bytes: 0,
            disk_interrupts: 0,
            cpus_online: 0,
            reserved: 0,
            lock_acquisitions: 0,
            lock_contended: 0,
            lock_spins: 0,
            tlb_shootdowns: 0,
            cpus: [CpuStats::EMPTY; MAX_CPUS],
            procs: [ProcStats::EMPTY; MAX_PROCS],
            ended_written: 0,
            ended: [Ended { seq: 0, proc: ProcStats::EMPTY }; ENDED],
            events_written: 0,
            events: [Event { seq: 0, tsc: 0, kind: 0, cpu: 0, pid: 0, arg: 0 }; EVENTS],
        }
    }
}

impl Default for StatsPage {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(core::mem::size_of::<Event>() == 24);
const _: () = assert!(EVENTS.is_power_of_two());
const _: () = assert!(ENDED.is_power_of_two());
const _: () = assert!(crate::syscall::COUNT as usize <= CALLS_MAX);

impl core::fmt::Debug for StatsPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StatsPage")
            .field("version", &self.version)
            .field("ticks", &self.ticks)
            .field("switches", &self.switches)
            .field("events_written", &self.events_written)
            .finish_non_exhaustive()
    }
}
