//! What a timer tick does: re-arm and acknowledge the timer, wake the sleepers whose time
//! came, charge the tick to the running process and decide whether it continues, is preempted
//! (its slice used up while another process is ready) or is killed by the runaway watchdog
//! (`lde.runaway_ms`).

use lde_abi::stats::EV_TICK;
use lde_kcore::proc::End;

use crate::arch::cpu::rdtsc;
use crate::arch::entry::TrapFrame;
use crate::arch::vectors::TIMER_VECTOR;
use crate::arch::{lapic, percpu};
use crate::counters;
use crate::process::{Kernel, KERNEL};
use crate::sched::{self, end_current, yield_current};
use crate::time::{self, Watchdog};

/// What a tick does to the running process.
enum Tick {
    Continue,
    /// Its slice is used up and another process is ready.
    Preempt,
    /// It ran longer than the runaway watchdog allows without a system call (`lde.runaway_ms`).
    Runaway,
}

/// A timer interrupt on processor 0: a tick (charged to the running process, which is
/// preempted when its slice is used up and another is ready, or killed by the runaway
/// watchdog), or in cooperative mode a sleeper's wake-up. Processor 0's ticks are the clock's:
/// the stats page's `ticks` and the tick costs count them.
///
/// The hot path of every tick, so it does all of a trap's bookkeeping itself in one borrow of
/// the kernel's state, the page's update inside it (`trap_dispatch` leaves the ring-3 time and
/// the trap's count to it): each further borrow or update cost every tick ~10 emulated
/// instructions. Its cost (`tick_cycles`) runs from the trap's entry to its decision, and the
/// TSC that ends it also starts what follows: the process's next ring-3 time, or its switch
/// out. No moment between the two is left out of both (a host that stopped the vCPU there
/// made a process's time running exceed its ring-3 time and its ticks' by milliseconds:
/// tests/states.rs), and a tick reads the TSC twice, not three times.
pub fn timer(frame: &TrapFrame, from_user: bool, now: u64) {
    let clock = time::on_tick(now);
    lapic::eoi();
    let runaway = clock.runaway;
    let (tick, end) = KERNEL.with(|k| {
        let current = percpu::current();
        if let (true, Some(slot)) = (from_user, current) {
            k.charge_user_time(slot, now);
        }
        sched::wake_due_sleepers(k, now);
        let pid = current.map_or(0, |s| k.procs.get(s).pid);
        let tick = (!clock.cooperative).then(|| decide(k, current, from_user, runaway, now));
        let end = rdtsc();
        k.stats.update(|page| {
            page.traps[usize::from(TIMER_VECTOR)] += 1;
            if tick.is_some() {
                page.ticks += 1;
                page.cpus[0].ticks += 1;
                page.now_tsc = now;
                counters::event(page, now, EV_TICK, pid, 0);
                page.tick_cycles += end - now;
                page.tick_count += 1;
            }
        });
        (tick, end)
    });
    match tick {
        Some(Tick::Continue) | None if from_user => percpu::set_user_entry(end),
        Some(Tick::Continue) | None => {}
        // SAFETY: the `with` that decided has returned (see `carry_out`).
        Some(tick) => unsafe { carry_out(tick, frame.rip, end) },
    }
}

/// Does what a tick decided for the process it interrupted at `rip`; `now` is when a preempted
/// process switches out.
///
/// # Safety
/// `Preempt` and `Runaway` are decided only for a tick that interrupted ring 3 (`decide`'s
/// `from_user`), so this runs on the interrupted process's own kernel stack (TSS.RSP0, set for
/// it by `sched::pick`), with IF clear (an interrupt gate); the caller holds no `KERNEL` borrow.
/// `sched::switch_to_scheduler` asserts all three.
#[inline(always)] // the tick's hot path
unsafe fn carry_out(tick: Tick, rip: u64, now: u64) {
    match tick {
        Tick::Continue => {}
        // SAFETY: the function's contract.
        Tick::Preempt => unsafe { yield_current(false, now) },
        // SAFETY: the function's contract.
        Tick::Runaway => unsafe { end_current(End::Killed { vector: TIMER_VECTOR, rip }) },
    }
}

/// What the tick at `now` does to the process in `current`, charged with it.
///
/// The runaway watchdog counts a tick only if the process ran in ring 3 for at least half a
/// period before it (since the kernel last returned to it): a tick that was already due when
/// the kernel returned (the kernel's own work, a wait for the big kernel lock, or the host not
/// running the vCPU, took longer than a period) finds the process where it was and is not its
/// doing. Without this a process that makes system calls but whose kernel work is slow could
/// be killed for "running" 20 ms in ring 3 it never ran (seen with two processors on a loaded
/// host: tests/attack.rs's chaos parent).
#[inline(always)] // the tick's hot path
fn decide(k: &mut Kernel, current: Option<usize>, from_user: bool, runaway: Watchdog, now: u64) -> Tick {
    match current {
        Some(slot) if from_user => {
            let p = k.procs.get_mut(slot);
            let ran_away = runaway.ticks != 0 && {
                if now.saturating_sub(percpu::user_entry()) >= runaway.min_run_tsc {
                    p.watched_ticks += 1;
                }
                p.watched_ticks >= runaway.ticks
            };
            p.acct.ticks += 1;
            p.slice_left = p.slice_left.saturating_sub(1);
            let left = p.slice_left;
            if ran_away {
                Tick::Runaway
            } else if left == 0 && k.procs.ready_count() > 0 {
                Tick::Preempt
            } else {
                Tick::Continue
            }
        }
        _ => Tick::Continue,
    }
}

/// A timer interrupt on another processor (`AP_TIMER_VECTOR`, periodic): the running process's
/// tick, as on processor 0, but not the clock's (its rate and punctuality are processor 0's).
pub fn ap_timer(frame: &TrapFrame, from_user: bool, now: u64) {
    lapic::eoi();
    let runaway = time::runaway();
    let tick = KERNEL.with(|k| {
        sched::wake_due_sleepers(k, now);
        let current = percpu::current();
        let pid = current.map_or(0, |s| k.procs.get(s).pid);
        let index = percpu::index();
        k.stats.update(|page| {
            page.cpus[index].ticks += 1;
            counters::event(page, now, EV_TICK, pid, 0);
        });
        let tick = decide(k, current, from_user, runaway, now);
        crate::resched::publish(&mut k.stats);
        tick
    });
    if !matches!(tick, Tick::Continue) {
        // SAFETY: the `with` that decided has returned (see `carry_out`).
        unsafe { carry_out(tick, frame.rip, rdtsc()) };
    }
}
