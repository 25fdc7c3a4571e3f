//! What a trap means: a system call (through either door, including the two PVM deviations
//! `doors.rs` recognises), a timer tick (`tick.rs`), serial input (`input.rs`), a disk's
//! completion (`disk.rs`), a first touch
//! of a demand-zero page, a fault a process armed a fixup for, a fault that kills the process,
//! or a fault in the kernel itself (`fatal.rs`).

use core::sync::atomic::{AtomicBool, Ordering};

use lde_abi::user::USER_END;
use lde_abi::virtio::MAX_DISKS;
use lde_kcore::proc::End;

use crate::arch::cpu::{self, rdtsc};
use crate::arch::entry::{self, TrapFrame};
use crate::arch::vectors::{
    AP_TIMER_VECTOR, DISK_VECTOR_BASE, GP_VECTOR, INT80_VECTOR, MC_VECTOR, NMI_VECTOR, NP_VECTOR, PF_VECTOR,
    RESCHED_VECTOR, SERIAL_VECTOR, SHOOTDOWN_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, UD_VECTOR,
};
use crate::arch::{lapic, percpu};
use crate::counters::{self, Arrival};
use crate::kernel_lock::KERNEL_LOCK;
use crate::process::KERNEL;
use crate::sched::end_current;
use crate::{disk, doors, exec, fatal, input, println, resched, shootdown, syscall, tick};

/// Error-code bit of a fault in delivering through an IDT gate (the vector is in bits 3-10).
const ERROR_IDT: u64 = 0b10;
/// #PF error code bit 0: the page was present (a protection fault).
const PF_PRESENT: u64 = 1;

/// Called by `trap_common` for every trap with the interrupted context's saved registers.
/// `from_user`: the trap came from ring 3 (`TrapFrame::came_from_user`, as the entry path
/// found it when it decided on `swapgs`).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame, from_user: bool) {
    if frame.vector == NMI_VECTOR {
        // An NMI can arrive anywhere, even while the kernel's state is lent out (IF does not
        // mask it): it touches nothing but its own counter, and it is never a process's fault.
        counters::NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    trap_arrived(frame, from_user, rdtsc());
}

/// A trap other than an NMI that arrived at TSC `now`: taken before the big kernel lock on
/// several processors, so that a wait for the lock is the kernel's time, not the interrupted
/// process's ring-3 time (nor the runaway watchdog's: `tick::decide`). A wait of a loaded host's
/// two processors had made a process that calls the kernel every few microseconds look as if it
/// ran 20 ms in ring 3 (tests/attack.rs's chaos parent, killed by the watchdog).
#[inline(never)] // one body, tail-called by both dispatchers (inlined into both, the tick lost ~12 instructions)
fn trap_arrived(frame: &mut TrapFrame, from_user: bool, now: u64) {
    debug_assert_eq!(x86_64::registers::rflags::read_raw(), entry::KERNEL_RFLAGS, "the entry contract");
    let vector = frame.vector;
    debug_assert_eq!(from_user, frame.came_from_user());
    // One of the host's deviations the entry path left to this code (system calls come
    // through `syscall_arrived`): a system call all the same, accounted in one go by `syscall`.
    let arrival = match vector {
        UD_VECTOR if from_user && doors::int80_recovered() && doors::int80_at(frame.rip) => {
            // PVM (found by the doors self-test): `int 0x80` from ring 3 arrives as #UD at the
            // instruction. Complete it.
            frame.rip += 2;
            Some(Arrival::Int80Recovered)
        }
        PF_VECTOR if from_user && doors::syscall_recovered() && doors::is_syscall_at_lstar(frame) => {
            // PVM (found by the doors self-test): `syscall` stayed in ring 3 and faulted
            // fetching LSTAR. (A jump to LSTAR is not this: it is killed with its #PF.)
            if !doors::complete_syscall(frame) {
                charge_user_time(now);
                count_trap(vector);
                kill(frame);
            }
            Some(Arrival::SyscallRecovered)
        }
        _ => None,
    };
    if let Some(arrival) = arrival {
        syscall::dispatch(frame, arrival, now);
        return_to(from_user);
        return;
    }
    if vector == u64::from(TIMER_VECTOR) {
        // Every tick's path does its own bookkeeping in one pass (tick.rs), the TSC of its
        // return to ring 3 included.
        tick::timer(frame, from_user, now);
        return;
    }
    if from_user {
        charge_user_time(now);
    }
    // An interrupt on a vector without a gate (idt.rs) counts as that vector.
    let stray = match vector {
        NP_VECTOR | GP_VECTOR => stray_interrupt(frame.error),
        _ => None,
    };
    let counted = stray.unwrap_or(vector);
    count_trap(counted);
    match vector {
        _ if stray.is_some() => unexpected_interrupt(counted, frame.rip),
        // A first touch of a BSS page (not present): map a zeroed frame and retry.
        PF_VECTOR
            if from_user && frame.error & PF_PRESENT == 0 && KERNEL.with(|k| exec::demand_zero(k, cpu::cr2())) => {}
        v if v == u64::from(SERIAL_VECTOR) => input::serial_interrupt(),
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        // A machine check is the hardware's failure, never the process's: the machine is not
        // to be trusted any more, in whichever ring it struck.
        MC_VECTOR => fatal::fatal(frame),
        v if v < 32 && from_user && fixed_up(frame) => {}
        v if v < 32 && from_user => kill(frame),
        v if v < 32 => fatal::fatal(frame),
        _ => device_interrupt(frame, from_user, now),
    }
    return_to(from_user);
}

/// Called by `trap_saved` for every system call from ring 3 through either door: `syscall`
/// (vector 0x100) and `int 0x80` (vector 0x80), each the architectural one or PVM's, whose #PF
/// or #UD the entry path turned into the same frame (`pf_syscall_entry`, `ud_int80_entry`); the
/// error-code slot says which (`syscall_entry::DOOR_*`). Not through `trap_dispatch`: the door is known, the
/// process is in ring 3, and the vector tests cost every call ~10 emulated instructions (`lde
/// bench --insns`).
#[no_mangle]
extern "C" fn syscall_arrived(frame: &mut TrapFrame) {
    syscall_arrived_at(frame, rdtsc());
}

/// A system call that arrived at TSC `now` (before the big kernel lock: see `trap_arrived`).
#[inline(always)] // the body of both dispatchers
fn syscall_arrived_at(frame: &mut TrapFrame, now: u64) {
    syscall::dispatch(frame, Arrival::of_frame(frame.error), now);
    if frame.rip >= USER_END {
        // sysretq to a non-user RIP would fault in ring 0; return with iretq instead.
        frame.vector = u64::from(INT80_VECTOR);
    }
    percpu::set_user_entry(rdtsc());
}

/// `trap_saved_smp`'s dispatch: `syscall_arrived` inside the lock (see `trap_dispatch_smp`).
#[no_mangle]
extern "C" fn syscall_arrived_smp(frame: &mut TrapFrame) {
    let now = rdtsc();
    let taken = KERNEL_LOCK.enter();
    syscall_arrived_at(frame, now);
    if taken {
        KERNEL_LOCK.leave();
    }
}

/// `trap_common_smp`'s dispatch: `trap::trap_dispatch` inside the lock.
#[no_mangle]
extern "C" fn trap_dispatch_smp(frame: &mut TrapFrame, from_user: bool) {
    if frame.vector == NMI_VECTOR {
        // As in `trap_dispatch`: an NMI may arrive while this processor holds the lock, or with
        // the process's GS base in place: it touches nothing but its counter.
        counters::NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if frame.vector == u64::from(SHOOTDOWN_VECTOR) {
        // Answered without the lock: the processor that asked holds it and waits.
        shootdown::interrupt();
        return;
    }
    let now = rdtsc();
    let taken = KERNEL_LOCK.enter();
    trap_arrived(frame, from_user, now);
    // The processor that returns here holds the lock whichever one took it (see the module's
    // text): the trap may have switched away and been resumed elsewhere.
    if taken {
        KERNEL_LOCK.leave();
    }
}

/// Charges the TSC cycles since the running process last entered ring 3 to it.
fn charge_user_time(now: u64) {
    KERNEL.with(|k| {
        if let Some(slot) = percpu::current() {
            k.charge_user_time(slot, now);
        }
    });
}

/// Counts a trap by its vector (system calls are counted with their call).
fn count_trap(vector: u64) {
    counters::update(|page| counters::count_trap(page, vector));
}

/// Notes the time ring 3 is entered again, for a trap that came from there.
fn return_to(from_user: bool) {
    if from_user {
        percpu::set_user_entry(rdtsc());
    }
}

/// The vector of an external interrupt on a vector without a gate (idt.rs), if that is what a
/// #GP or #NP with this error code is. Not told by the error code's EXT bit, which neither PVM
/// nor QEMU sets (both as for `int n` from ring 3), but by the LAPIC: it put the vector in
/// service when it delivered the interrupt; `int n` puts nothing there. PVM gives
/// `vector * 8 + 2` as the SDM says; QEMU's TCG gives `vector * 16 + 2` for a gate of the wrong
/// type (docs/platform.md), so both readings are tried.
fn stray_interrupt(error: u64) -> Option<u64> {
    if error & ERROR_IDT == 0 {
        return None;
    }
    [error >> 3, error >> 4].into_iter().find(|v| (32..256).contains(v) && lapic::in_service(*v as u8))
}

/// An interrupt of a disk, of another processor's timer, a reschedule IPI, or of a vector
/// nothing was set up for. Out of line: the match in `trap_dispatch` stays as small as the hot
/// paths (system calls, ticks) need it (an arm of its own there cost every system call ~10
/// emulated instructions, `lde bench --insns`).
#[inline(never)]
fn device_interrupt(frame: &TrapFrame, from_user: bool, now: u64) {
    let vector = frame.vector;
    match vector.checked_sub(u64::from(DISK_VECTOR_BASE)) {
        Some(disk) if disk < MAX_DISKS as u64 => disk::interrupt(disk as usize),
        _ if vector == u64::from(AP_TIMER_VECTOR) => tick::ap_timer(frame, from_user, now),
        _ if vector == u64::from(RESCHED_VECTOR) => resched::rescheduled(),
        _ => unexpected_interrupt(vector, frame.rip),
    }
}

/// An interrupt vector nothing was set up to raise (only devices can: ring 3 may raise only
/// the DPL-3 gates), delivered as a #GP or #NP (idt.rs), which is no fault of whatever it
/// interrupted. Acknowledged, so that it does not block lower-priority vectors in
/// the LAPIC, and reported once.
fn unexpected_interrupt(vector: u64, rip: u64) {
    lapic::eoi();
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        println!("kernel: unexpected interrupt {vector} at rip {rip:#x}, acknowledged (reported once)");
    }
}

/// Resumes the process at its fixup address if it armed one for this RIP.
fn fixed_up(frame: &mut TrapFrame) -> bool {
    KERNEL.with(|k| {
        let Some(slot) = percpu::current() else { return false };
        let p = k.procs.get_mut(slot);
        match p.fixup {
            Some((fault, resume)) if fault == frame.rip => {
                frame.rip = resume;
                p.acct.fixups += 1;
                true
            }
            _ => false,
        }
    })
}

/// Kills the running process for the trap in `frame`, which came from ring 3.
fn kill(frame: &TrapFrame) -> ! {
    debug_assert!(frame.came_from_user(), "only a trap from ring 3 is a process's fault");
    KERNEL.with(|k| {
        if let Some(slot) = percpu::current() {
            k.procs.get_mut(slot).acct.faults += 1;
        }
    });
    let end = End::Killed { vector: frame.vector as u8, rip: frame.rip };
    // SAFETY: every caller checked `from_user` (asserted above): the trap arrived from ring 3,
    // so the CPU switched to the process's own kernel stack (TSS.RSP0, or the `syscall` stack
    // for a recovered `syscall`, both set for it by `sched::pick`) through a gate that cleared
    // IF, and the `with` above has returned. `sched::switch_to_scheduler` asserts all three.
    unsafe { end_current(end) }
}
