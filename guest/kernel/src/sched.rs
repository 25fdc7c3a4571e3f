//! Scheduling: the scheduler loop, and the ways a process gives up the CPU (yield, preemption,
//! sleep, blocking read, wait, exit, kill) and gets it back (wake-ups).
//!
//! The scheduler runs on the boot stack. A process runs on its own kernel stack in the kernel
//! (its TrapFrame at the top) and switches to the scheduler with `switch_context` whenever it
//! gives up the CPU; the scheduler switches back to whichever process is next (xv6's design).
//! No [`KERNEL`] borrow is held across a switch: each side computes what it needs inside one
//! `with` and switches after it.
//!
//! With several processors (`lde.cpus`) each runs this scheduler on a stack of its own (its
//! `PerCpu` keeps the scheduler's RSP and the process it runs), and all share one run queue, the
//! process table's, under the big kernel lock (kernel_lock.rs). A processor that makes a process
//! ready while another halts idle wakes that one with a reschedule IPI (`resched::kick_idle`), so no
//! ready process waits while a processor idles.

use core::sync::atomic::Ordering;

use lde_abi::stats::{self as ev, OUT_BLOCK, OUT_END, OUT_PREEMPT, OUT_YIELD};
use lde_kcore::proc::{End, State, MAX_PROCS};
use lde_kcore::trap::mnemonic;

use crate::arch::cpu::{rdtsc, SegmentBases};
use crate::arch::switch::switch;
use crate::arch::{paging, percpu};
use crate::console::Line;
use crate::counters::{self, print_acct};
use crate::exec::spawn_pending;
use crate::process::{current, Kernel, KERNEL};
use crate::stacks::{kstack_top, saved_rsp, KSTACK_SIZE};
use crate::{idle, kernel_lock, resched, shootdown, time};

/// What the scheduler does next.
enum Next {
    /// Switch to this slot's saved context.
    Run { slot: usize, rsp: u64 },
    /// Nothing is ready: halt until an interrupt (the earliest sleeper's deadline).
    Idle(Option<u64>),
    /// No process is left; whether any failed.
    Done(bool),
}

/// Runs processes until none is left; returns whether any failed.
pub fn run_scheduler() -> bool {
    loop {
        let (slot, rsp) = match KERNEL.with(pick) {
            Next::Done(failed) => return failed,
            Next::Idle(next_wake) => {
                idle::wait_for_work(next_wake);
                continue;
            }
            Next::Run { slot, rsp } => (slot, rsp),
        };
        // SAFETY: `rsp` is the slot's saved RSP (`pick` read it): saved by `switch` when the
        // process last gave up the CPU, or built on its kernel stack by `exec::spawn`, and a
        // ready process's stack is live (and no other processor runs it: it was in the run
        // queue, which only the lock's holder uses). Interrupts are off in the scheduler outside
        // `idle::wait_for_work`, and `pick`'s `with` has returned.
        unsafe { switch(percpu::this().sched_rsp().as_ptr(), rsp) };
        KERNEL.with(|k| switched_back(k, slot));
    }
}

/// Chooses the next process and makes the CPU ready to run it.
fn pick(k: &mut Kernel) -> Next {
    wake_due_sleepers(k, rdtsc());
    let cpu = percpu::this();
    let Some(slot) = k.procs.pick_next() else {
        if !k.procs.any_live() {
            return Next::Done(k.failures.any());
        }
        cpu.take_switch_out();
        return Next::Idle(k.next_wake);
    };
    cpu.set_current(Some(slot));
    // SAFETY: the TSS and syscall stack now name the stack of the process about to run, with
    // interrupts off.
    unsafe { cpu.set_kernel_stack(kstack_top(slot)) };
    let machine = &k.procs.get(slot).machine;
    machine.space.as_ref().expect("a ready process has an address space").activate();
    machine.fx.restore();
    machine.bases.load(cpu.bases());
    cpu.set_bases(machine.bases);
    let rsp = saved_rsp(slot).load(Ordering::Relaxed);
    let pid = k.procs.get(slot).pid;
    let now = rdtsc();
    percpu::set_user_entry(now);
    let out = cpu.take_switch_out();
    let index = percpu::index();
    k.stats.update(|page| {
        if out != 0 {
            page.switch_cycles += now - out;
            page.switch_count += 1;
        }
        page.switches += 1;
        let mine = &mut page.cpus[index % lde_abi::stats::MAX_CPUS];
        mine.switches += 1;
        mine.current_pid = pid;
        page.now_tsc = now;
        // Only what switching in changed; the rest is published when it switches out.
        page.procs[slot].state = ev::STATE_RUNNING;
        page.procs[slot].scheduled = k.procs.get(slot).acct.scheduled;
        counters::event(page, now, ev::EV_SWITCH_IN, pid, 0);
    });
    if !k.entered_user {
        k.entered_user = true;
        crate::arch::cpu::milestone(lde_abi::ports::MILESTONE_FIRST_USER);
    }
    Next::Run { slot, rsp }
}

/// Back on the scheduler stack after `slot` gave up the CPU: save its FPU state and segment
/// bases, and if it ended, free it and start the programs waiting for a free slot.
fn switched_back(k: &mut Kernel, slot: usize) {
    let cpu = percpu::this();
    cpu.set_current(None);
    let index = percpu::index();
    let p = k.procs.get_mut(slot);
    p.machine.fx.save();
    let bases = SegmentBases::read();
    cpu.set_bases(bases);
    p.machine.bases = bases;
    let user_cycles = p.acct.user_cycles;
    // What this processor did, published with the process's figures in one update: its ring-3
    // time here is what the process gained since its slot of the page was last published (at
    // its last switch out, or its spawn), as it ran nowhere else meanwhile.
    let switched_out = |page: &mut lde_abi::stats::StatsPage| {
        let ran_here = user_cycles.saturating_sub(page.procs[slot].user_cycles);
        let mine = &mut page.cpus[index % lde_abi::stats::MAX_CPUS];
        mine.user_cycles += ran_here;
        mine.current_pid = 0;
    };
    if p.state == State::Zombie {
        paging::activate_kernel();
        if let Some(space) = p.machine.space.take() {
            if kernel_lock::active() {
                // Idle processors may still hold it (resched.rs): none may once it is freed.
                shootdown::release(space.root());
                resched::publish(&mut k.stats);
            }
            space.destroy(&mut k.frames);
        }
        let in_use = k.frames.in_use();
        k.stats.update(|page| {
            switched_out(page);
            page.frames_in_use = in_use;
            counters::publish_end(page, slot, k.procs.get(slot));
        });
        k.procs.reap(slot);
        spawn_pending(k);
    } else {
        k.stats.update(|page| {
            switched_out(page);
            counters::publish_counters(page, slot, k.procs.get(slot));
        });
    }
}

/// Makes sleepers whose deadline has passed ready. Only the test is inline (every tick makes
/// it); the waking is out of line, which keeps the tick's common path short (as an inlined
/// whole it cost every tick ~10 emulated instructions, `lde bench --insns`).
#[inline(always)]
pub fn wake_due_sleepers(k: &mut Kernel, now: u64) {
    if k.next_wake.is_some_and(|t| t <= now) {
        wake_sleepers(k, now);
    }
}

#[inline(never)]
fn wake_sleepers(k: &mut Kernel, now: u64) {
    let procs = &mut k.procs;
    let mut woken = [0u32; MAX_PROCS];
    let mut n = 0;
    let pids: [u32; MAX_PROCS] = core::array::from_fn(|s| procs.get(s).pid);
    k.next_wake = procs.wake_sleepers(now, |slot| {
        woken[n] = pids[slot];
        n += 1;
    });
    k.stats.update(|page| {
        for &pid in &woken[..n] {
            counters::event(page, now, ev::EV_WAKE, pid, ev::ON_SLEEP);
        }
    });
    // An idle processor for each (as many as idle): none of them waits while one idles.
    for _ in 0..n {
        resched::kick_idle();
    }
}

/// Makes every process blocked in `read` ready. Out of line: inlined into the trap path (the
/// serial interrupt's), it cost every system call 2 emulated instructions (`lde bench --insns`).
#[inline(never)]
pub fn wake_readers(k: &mut Kernel) {
    let now = rdtsc();
    let pids: [u32; MAX_PROCS] = core::array::from_fn(|s| k.procs.get(s).pid);
    k.procs.wake_readers(|slot| {
        k.stats.update(|page| counters::event(page, now, ev::EV_WAKE, pids[slot], ev::ON_INPUT));
        resched::kick_idle();
    });
}

/// Makes every process blocked on a disk ready: a request ended, or a disk came free.
pub fn wake_disk_waiters(k: &mut Kernel) {
    let now = rdtsc();
    let pids: [u32; MAX_PROCS] = core::array::from_fn(|s| k.procs.get(s).pid);
    k.procs.wake_disk_waiters(|slot| {
        k.stats.update(|page| counters::event(page, now, ev::EV_WAKE, pids[slot], ev::ON_DISK));
        resched::kick_idle();
    });
}

/// Notes that the running process in `slot` (whose state the caller has changed) is about to
/// switch to the scheduler at TSC `now`, and why: inside the caller's borrow (a borrow of its
/// own cost each switch ~8 emulated instructions more).
fn note_switch_out(k: &mut Kernel, slot: usize, why: u32, now: u64) {
    let pid = k.procs.get(slot).pid;
    // An ending process's switch includes freeing its memory: not a plain switch.
    percpu::this().set_switch_out(if why == OUT_END { 0 } else { now });
    k.stats.update(|page| counters::event(page, now, ev::EV_SWITCH_OUT, pid, why));
}

/// Switches from the running process in `slot` to the scheduler ([`note_switch_out`] done);
/// returns when the scheduler runs the process again.
///
/// # Safety
/// Must run on that process's kernel stack with interrupts off, with no `KERNEL` borrow alive:
/// the scheduler resumes on its own stack and borrows `KERNEL`, and the process's RSP is saved
/// for its slot. The three are asserted in debug builds.
unsafe fn switch_to_scheduler(slot: usize) {
    debug_assert!(!x86_64::instructions::interrupts::are_enabled(), "switch with interrupts on");
    debug_assert!(!KERNEL.is_lent(), "switch with the kernel's state lent out");
    debug_assert!(
        (kstack_top(slot) - KSTACK_SIZE as u64..kstack_top(slot)).contains(&(core::ptr::addr_of!(slot) as u64)),
        "switch off the process's own kernel stack"
    );
    // SAFETY: the processor's scheduler RSP was saved by its switch into this process, on its
    // scheduler's stack (the boot stack, or an application processor's), which stays live;
    // interrupts are off (the caller's contract).
    unsafe { switch(saved_rsp(slot).as_ptr(), percpu::this().sched_rsp().load(Ordering::Relaxed)) };
}

/// The running process gives up the rest of its slice (`voluntary`) or is preempted, at TSC
/// `now` (a preempting tick's: the one that ended its cost). When it runs again its ring-3 time
/// starts where `sched::pick` switched it in.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn yield_current(voluntary: bool, now: u64) {
    let slot = KERNEL.with(|k| {
        let slot = current();
        k.procs.preempt(slot, voluntary);
        k.procs.get_mut(slot).slice_left = time::slice();
        // No reschedule IPI: a processor idles only with the run queue empty, and this one
        // goes on to pick from it at once.
        note_switch_out(k, slot, if voluntary { OUT_YIELD } else { OUT_PREEMPT }, now);
        slot
    });
    // SAFETY: the caller's contract.
    unsafe { switch_to_scheduler(slot) };
}

/// The running process blocks in `state` (sleeping, reading or waiting) until woken.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn block_current(state: State) {
    let slot = KERNEL.with(|k| {
        let slot = current();
        let pid = k.procs.get(slot).pid;
        if let State::Sleeping { until } = state {
            k.next_wake = Some(k.next_wake.map_or(until, |t| t.min(until)));
        }
        k.procs.block(slot, state);
        let what = match state {
            State::Reading => ev::ON_INPUT,
            State::Waiting => ev::ON_CHILD,
            State::Disk => ev::ON_DISK,
            _ => ev::ON_SLEEP,
        };
        let now = rdtsc();
        k.stats.update(|page| counters::event(page, now, ev::EV_BLOCK, pid, what));
        note_switch_out(k, slot, OUT_BLOCK, now);
        slot
    });
    // SAFETY: the caller's contract.
    unsafe { switch_to_scheduler(slot) };
}

/// Ends the running process with `end`, printing its line and its accounting, wakes its parent
/// if it waits, and never returns to it.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn end_current(end: End) -> ! {
    let slot = KERNEL.with(|k| {
        let mut parent = None;
        let slot = current();
        k.procs.end(slot, end, |s| parent = Some(s));
        if parent.is_some() {
            resched::kick_idle();
        }
        k.failures.processes += u32::from(end.failed());
        let parent_pid = parent.map(|s| k.procs.get(s).pid);
        let p = k.procs.get(slot);
        let now = rdtsc();
        k.stats.update(|page| {
            counters::record_end(page, slot, p);
            if let Some(pid) = parent_pid {
                counters::event(page, now, ev::EV_WAKE, pid, ev::ON_CHILD);
            }
        });
        // The fixed-form line starts on a line of its own, whatever the process left unfinished.
        crate::console::start_line();
        match end {
            End::Exited(status) => {
                Line::new()
                    .str("exit pid=")
                    .dec(u64::from(p.pid))
                    .str(" name=")
                    .bytes(p.name_bytes())
                    .str(" status=")
                    .dec(u64::from(status))
                    .end();
                k.stats.update(|page| counters::event(page, now, ev::EV_EXIT, p.pid, u32::from(status)));
            }
            End::Killed { vector, rip } => {
                Line::new()
                    .str("killed pid=")
                    .dec(u64::from(p.pid))
                    .str(" name=")
                    .bytes(p.name_bytes())
                    .str(" trap=")
                    .str(mnemonic(u64::from(vector)))
                    .str(" rip=")
                    .hex(rip)
                    .end();
                k.stats.update(|page| {
                    page.kills += 1;
                    counters::event(page, now, ev::EV_FAULT, p.pid, u32::from(vector));
                });
            }
        }
        print_acct(&k.stats, slot, p);
        note_switch_out(k, slot, OUT_END, now);
        slot
    });
    // SAFETY: caller's contract; a zombie is never scheduled again.
    unsafe { switch_to_scheduler(slot) };
    unreachable!("a zombie was resumed");
}
