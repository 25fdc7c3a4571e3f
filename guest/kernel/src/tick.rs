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
use crate::time;

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
pub fn timer(frame: &TrapFrame, from_user: bool, now: u64) {
    let clock = time::on_tick(now);
    lapic::eoi();
    let runaway = clock.runaway_ticks;
    let tick = KERNEL.with(|k| {
        sched::wake_due_sleepers(k, now);
        if clock.cooperative {
            return None;
        }
        let current = percpu::current();
        let pid = current.map_or(0, |s| k.procs.get(s).pid);
        counters::update(|page| {
            page.ticks += 1;
            page.cpus[0].ticks += 1;
            page.now_tsc = now;
            counters::event(page, now, EV_TICK, pid, 0);
        });
        Some(decide(k, current, from_user, runaway))
    });
    let Some(tick) = tick else { return };
    let end = rdtsc();
    counters::update(|page| {
        page.tick_cycles += end - now;
        page.tick_count += 1;
    });
    // SAFETY: the `with` that decided has returned (see `carry_out`).
    unsafe { carry_out(tick, frame.rip) };
}

/// Does what a tick decided for the process it interrupted at `rip`.
///
/// # Safety
/// `Preempt` and `Runaway` are decided only for a tick that interrupted ring 3 (`decide`'s
/// `from_user`), so this runs on the interrupted process's own kernel stack (TSS.RSP0, set for
/// it by `sched::pick`), with IF clear (an interrupt gate); the caller holds no `KERNEL` borrow.
/// `sched::switch_to_scheduler` asserts all three.
#[inline(always)] // the tick's hot path
unsafe fn carry_out(tick: Tick, rip: u64) {
    match tick {
        Tick::Continue => {}
        // SAFETY: the function's contract.
        Tick::Preempt => unsafe { yield_current(false) },
        // SAFETY: the function's contract.
        Tick::Runaway => unsafe { end_current(End::Killed { vector: TIMER_VECTOR, rip }) },
    }
}

/// What the tick does to the process in `current`, charged with it.
#[inline(always)] // the tick's hot path
fn decide(k: &mut Kernel, current: Option<usize>, from_user: bool, runaway: u64) -> Tick {
    match current {
        Some(slot) if from_user => {
            let p = k.procs.get_mut(slot);
            // The watchdog's test counts this tick but runs before it is added: a tick
            // without the watchdog (the common one) then adds it in memory instead of keeping
            // the count in a register for the test, an emulated instruction fewer.
            let ran_away = runaway != 0 && p.acct.ticks + 1 - p.ticks_at_call >= runaway;
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
    let runaway = time::runaway_ticks();
    let tick = KERNEL.with(|k| {
        sched::wake_due_sleepers(k, now);
        let current = percpu::current();
        let pid = current.map_or(0, |s| k.procs.get(s).pid);
        let index = percpu::index();
        counters::update(|page| {
            page.cpus[index].ticks += 1;
            counters::event(page, now, EV_TICK, pid, 0);
        });
        decide(k, current, from_user, runaway)
    });
    crate::resched::publish();
    // SAFETY: the `with` that decided has returned (see `carry_out`).
    unsafe { carry_out(tick, frame.rip) };
}
