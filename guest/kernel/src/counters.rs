//! The kernel's counters, kept in the stats page (`lde_abi::stats`) where the host reads them
//! without a VM exit: every trap by vector, each system-call door by how the call arrived, each
//! system call by number, per-process accounting, and the scheduling event log.

use lde_abi::stats::{
    ProcStats, StatsPage, DOOR_ARCHITECTURAL, DOOR_OTHER, DOOR_RECOVERED, END_EXITED, END_KILLED, END_NONE, NAME_MAX,
    PROT_SMAP_OFFERED, PROT_SMEP, PROT_UMIP, STATE_DISK, STATE_FREE, STATE_READING, STATE_READY, STATE_RUNNING,
    STATE_SLEEPING, STATE_WAITING, STATE_ZOMBIE,
};
use lde_abi::syscall::NAMES;
use lde_kcore::proc::{End, Proc, State};
use lde_kcore::trap::mnemonic;

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::vectors::{INT80_VECTOR, PF_VECTOR, UD_VECTOR};
use crate::arch::{percpu, syscall_entry};
use crate::process::KERNEL;
use crate::stats::Stats;
use crate::{print, println};

/// NMIs taken (folded into the stats page's trap counts at the end of the run): an atomic, as an
/// NMI arrives even while the page is lent.
pub static NMIS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How a system call reached the kernel; on the entry path's frames the door's code in the
/// error-code slot (`syscall_entry::DOOR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Arrival {
    /// `syscall` → CPL0 at LSTAR (hardware KVM, QEMU).
    SyscallArchitectural = syscall_entry::DOOR_SYSCALL as u8,
    /// `syscall` → #PF at LSTAR in ring 3, completed by the kernel (PVM).
    SyscallRecovered = syscall_entry::DOOR_SYSCALL_PVM as u8,
    /// `int 0x80` → vector 0x80 (hardware KVM, QEMU).
    Int80Architectural = syscall_entry::DOOR_INT80 as u8,
    /// `int 0x80` → #UD at the instruction, completed by the kernel (PVM).
    Int80Recovered = syscall_entry::DOOR_INT80_PVM as u8,
}

impl Arrival {
    /// The door a system call's frame names in its error-code slot (`syscall_arrived`'s frames).
    pub fn of_frame(error: u64) -> Arrival {
        match error & 3 {
            syscall_entry::DOOR_SYSCALL => Arrival::SyscallArchitectural,
            syscall_entry::DOOR_SYSCALL_PVM => Arrival::SyscallRecovered,
            syscall_entry::DOOR_INT80 => Arrival::Int80Architectural,
            _ => Arrival::Int80Recovered,
        }
    }
}

/// Updates the counters inside one seqlock write section, where the caller holds no borrow of
/// the kernel's state (inside one, `k.stats.update`).
pub fn update<R>(f: impl FnOnce(&mut StatsPage) -> R) -> R {
    KERNEL.with(|k| k.stats.update(f))
}

/// Appends an event of this processor to the log (the event's own `seq` is written last).
pub fn event(page: &mut StatsPage, tsc: u64, kind: u8, pid: u32, arg: u32) {
    page.push_event(tsc, kind, percpu::index() as u8, pid as u16, arg);
}

/// Counts a trap by its vector (the `syscall` pseudo-vector 0x100 has no counter).
pub fn count_trap(page: &mut StatsPage, vector: u64) {
    if let Some(n) = page.traps.get_mut(vector as usize) {
        *n += 1;
    }
}

/// Counts a system call by its door, and as the trap the CPU delivered: none for `syscall`
/// (no vector), #PF and #UD for the recovered doors (also where the entry path turned them into
/// the architectural doors' frames), vector 0x80 for `int 0x80`.
pub fn count_arrival(page: &mut StatsPage, arrival: Arrival) {
    match arrival {
        Arrival::SyscallArchitectural => page.syscall_arch += 1,
        Arrival::SyscallRecovered => {
            page.syscall_recovered += 1;
            page.traps[PF_VECTOR as usize] += 1;
        }
        Arrival::Int80Architectural => {
            page.int80_arch += 1;
            page.traps[usize::from(INT80_VECTOR)] += 1;
        }
        Arrival::Int80Recovered => {
            page.int80_recovered += 1;
            page.traps[UD_VECTOR as usize] += 1;
        }
    }
}

/// The variants of `State` are in the order of the codes: this compiles to no work (it runs on
/// every switch).
fn state_code(state: State) -> u32 {
    match state {
        State::Free => STATE_FREE,
        State::Ready => STATE_READY,
        State::Running => STATE_RUNNING,
        State::Sleeping { .. } => STATE_SLEEPING,
        State::Reading => STATE_READING,
        State::Zombie => STATE_ZOMBIE,
        State::Waiting => STATE_WAITING,
        State::Disk => STATE_DISK,
    }
}

/// A process's bookkeeping in the page's form.
fn proc_stats<M>(p: &Proc<M>) -> ProcStats {
    let mut name = [0u8; NAME_MAX];
    let n = p.name_bytes().len().min(NAME_MAX);
    name[..n].copy_from_slice(&p.name_bytes()[..n]);
    let (end, end_value, end_rip) = match p.end {
        None => (END_NONE, 0, 0),
        Some(End::Exited(status)) => (END_EXITED, u32::from(status), 0),
        Some(End::Killed { vector, rip }) => (END_KILLED, u32::from(vector), rip),
    };
    ProcStats {
        pid: p.pid,
        state: state_code(p.state),
        name,
        ticks: p.acct.ticks,
        scheduled: p.acct.scheduled,
        voluntary: p.acct.voluntary,
        involuntary: p.acct.involuntary,
        faults: p.acct.faults,
        user_cycles: p.acct.user_cycles,
        // Kept in the page alone, like the disk's: a new process starts with none.
        syscalls: [0; lde_abi::stats::CALLS_MAX],
        end,
        end_value,
        end_rip,
        // Kept in the page alone (see `disk_done`): a new process starts with none.
        disk_requests: 0,
        disk_bytes: 0,
        disk_wait_cycles: 0,
    }
}

/// Copies a process's bookkeeping into its slot of the page (at spawn and end).
pub fn publish<M>(page: &mut StatsPage, slot: usize, p: &Proc<M>) {
    page.procs[slot] = proc_stats(p);
}

/// Copies only the counters that change while a process runs (after each switch out). Its
/// system-call counts are kept up to date in the page by the system-call path itself. Kept
/// small: on PVM every kernel instruction costs ~0.7 µs, and this runs on every switch.
pub fn publish_counters<M>(page: &mut StatsPage, slot: usize, p: &Proc<M>) {
    let out = &mut page.procs[slot];
    out.state = state_code(p.state);
    out.ticks = p.acct.ticks;
    out.scheduled = p.acct.scheduled;
    out.voluntary = p.acct.voluntary;
    out.involuntary = p.acct.involuntary;
    out.faults = p.acct.faults;
    out.user_cycles = p.acct.user_cycles;
}

/// Appends an ended process's final accounting (the process in `slot`) to the ring of ended
/// processes.
pub fn record_end<M>(page: &mut StatsPage, slot: usize, p: &Proc<M>) {
    let last = ended_stats(page, slot, p);
    page.push_ended(last);
}

/// Publishes the final figures of the ended process in `slot` into its slot of the page (which
/// shows it until the slot is reused).
pub fn publish_end<M>(page: &mut StatsPage, slot: usize, p: &Proc<M>) {
    page.procs[slot] = ended_stats(page, slot, p);
}

/// An ended process's figures: the process table's, with the counters only the page keeps (its
/// system calls by number, its disk's).
fn ended_stats<M>(page: &StatsPage, slot: usize, p: &Proc<M>) -> ProcStats {
    let mut last = proc_stats(p);
    let kept = &page.procs[slot];
    (last.disk_requests, last.disk_bytes, last.disk_wait_cycles, last.syscalls) =
        (kept.disk_requests, kept.disk_bytes, kept.disk_wait_cycles, kept.syscalls);
    last
}

/// Counts a finished disk request of `len` bytes for the process in `slot`, which waited
/// `waited` TSC cycles from submitting it to running again. A process's disk counters are kept
/// in its slot of the page only, not in the process table (see `lde_kcore::proc::Accounting`).
pub fn disk_done(page: &mut StatsPage, slot: usize, len: u64, write: bool, waited: u64) {
    page.disk_requests += 1;
    if write {
        page.disk_write_bytes += len;
    } else {
        page.disk_read_bytes += len;
    }
    let out = &mut page.procs[slot];
    out.disk_requests += 1;
    out.disk_bytes += len;
    out.disk_wait_cycles += waited;
}

/// Prints a process's accounting as one `acct` line.
/// Whether the kernel prints what the host reads from the stats page (`lde.verbose=1`).
pub static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Whether `acct` and `stats:` lines are printed.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Prints the `acct` line of the process in `slot` where [`verbose`] asks for it.
pub fn print_acct<M>(stats: &Stats, slot: usize, p: &Proc<M>) {
    if !verbose() {
        return;
    }
    let a = &p.acct;
    print!(
        "acct pid={} name={} ticks={} scheduled={} voluntary={} involuntary={} faults={} user_cycles={} syscalls=",
        p.pid,
        p.name(),
        a.ticks,
        a.scheduled,
        a.voluntary,
        a.involuntary,
        a.faults,
        a.user_cycles
    );
    let (calls, disk) = stats.read(|page| {
        let s = &page.procs[slot];
        (s.syscalls, (s.disk_requests, s.disk_bytes, s.disk_wait_cycles))
    });
    let mut first = true;
    for (name, &n) in NAMES.iter().zip(calls.iter()) {
        if n != 0 {
            print!("{}{name}:{n}", if first { "" } else { "," });
            first = false;
        }
    }
    if disk.0 != 0 {
        print!(" disk_requests={} disk_bytes={} disk_wait_cycles={}", disk.0, disk.1, disk.2);
    }
    println!();
}

/// Prints the counters as `stats:` lines of `key=value` words (a fixed form tests read).
/// `missed_ticks` gives the timer periods without a tick of their own for a count of ticks,
/// `punctual` the ticks that came on time (both the clock's, passed in so that this module
/// needs none of `time`'s).
pub fn print(missed_ticks: impl Fn(u64) -> u64, punctual: u64) {
    KERNEL.with(|k| k.stats.read(|page| print_page(page, missed_ticks(page.ticks), punctual)));
}

fn print_page(page: &StatsPage, missed: u64, punctual: u64) {
    let on = |bit: u32| if page.protection & bit != 0 { "on" } else { "off" };
    let door = |code: u32| match code & 0xff {
        DOOR_ARCHITECTURAL => "architectural",
        DOOR_RECOVERED => "recovered",
        DOOR_OTHER => "broken",
        _ => "untested",
    };
    println!(
        "stats: protection smep={} umip={} smap={} syscall={} int80={}",
        on(PROT_SMEP),
        on(PROT_UMIP),
        if page.protection & PROT_SMAP_OFFERED != 0 { "offered-unused" } else { "absent" },
        door(page.doors),
        door(page.doors >> 8)
    );
    println!(
        "stats: doors syscall.arch={} syscall.recovered={} int80.arch={} int80.recovered={}",
        page.syscall_arch, page.syscall_recovered, page.int80_arch, page.int80_recovered
    );
    print!("stats: calls");
    for (name, n) in NAMES.iter().zip(page.calls) {
        print!(" {name}={n}");
    }
    println!();
    print!("stats: traps");
    for (vector, &n) in page.traps.iter().enumerate() {
        if n != 0 {
            print!(" {}:{}={n}", vector, mnemonic(vector as u64));
        }
    }
    println!();
    let uptime_ms = (page.now_tsc - page.boot_tsc) * 1000 / page.tsc_hz.max(1);
    let timer_ms = page.timer_stopped_tsc.saturating_sub(page.timer_started_tsc) * 1000 / page.tsc_hz.max(1);
    println!(
        "stats: sched kills={} switches={} spawned={} ticks={} missed={} punctual={} timer_hz={} timer_ms={timer_ms} uptime_ms={uptime_ms} idle_ms={}",
        page.kills,
        page.switches,
        page.spawned,
        page.ticks,
        missed,
        punctual,
        page.timer_hz,
        page.idle_cycles * 1000 / page.tsc_hz.max(1)
    );
    if page.disk_requests != 0 || page.disk_interrupts != 0 {
        println!(
            "stats: disk requests={} read_bytes={} write_bytes={} interrupts={}",
            page.disk_requests, page.disk_read_bytes, page.disk_write_bytes, page.disk_interrupts
        );
    }
    if page.cpus_online > 1 {
        print_cpus(page);
    }
}

/// With several processors: a `stats: cpuN` line for each that ran processes, and the big
/// kernel lock's line.
fn print_cpus(page: &StatsPage) {
    for (i, c) in page.cpus.iter().enumerate().filter(|(_, c)| c.online != 0) {
        println!(
            "stats: cpu{i} ticks={} switches={} user_ms={} idle_ms={} ipis_sent={} ipis_received={}",
            c.ticks,
            c.switches,
            c.user_cycles * 1000 / page.tsc_hz.max(1),
            c.idle_cycles * 1000 / page.tsc_hz.max(1),
            c.ipis_sent,
            c.ipis_received
        );
    }
    println!(
        "stats: lock acquisitions={} contended={} spins={}",
        page.lock_acquisitions, page.lock_contended, page.lock_spins
    );
    println!("stats: tlb shootdowns={}", page.tlb_shootdowns);
}
