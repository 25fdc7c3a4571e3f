//! Reschedule IPIs and the idle processors: with several processors (`lde.cpus`), one that makes
//! a process ready while another halts idle wakes that one with an IPI on `RESCHED_VECTOR`, so
//! no ready process waits while a processor idles ([`kick_idle`], called wherever a process
//! becomes ready: spawn, wake-ups, preemption, a child's end).
//!
//! An idle processor keeps the page tables of the last process it ran (as Linux's lazy TLB mode
//! does): the next pick is often that process again, and a CR3 write costs an exit where ring 0 is
//! emulated. So freeing an address space takes a TLB shootdown first (shootdown.rs).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lde_kcore::mptable::MAX_CPUS;

use crate::arch::vectors::RESCHED_VECTOR;
use crate::arch::{cpu, lapic, percpu};
use crate::kernel_lock::KERNEL_LOCK;
use crate::process::KERNEL;
use crate::shootdown;
use crate::stats::Stats;

/// The processors halted in the idle loop, one bit each (set and cleared by each under the
/// lock; a kick clears the bit of the one it wakes, so two kicks wake two).
static IDLE: AtomicU32 = AtomicU32::new(0);
/// IPIs each processor took on the common path (reschedule IPIs, and the round trip's answers
/// added at boot), published with the shootdowns it answered as its `ipis_received`.
static RECEIVED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Counts `n` IPIs processor `cpu` took outside the common path (the round trip's stub).
pub fn count_received(cpu: usize, n: u64) {
    RECEIVED[cpu].fetch_add(n, Ordering::Relaxed);
}

/// Wakes an idle processor other than this one, if there is one, for a process just made
/// ready: called once per process made ready, so that several ready at once wake as many idle
/// processors. Called with the lock held. One test where no processor idles (always, with one
/// processor).
#[inline(always)]
pub fn kick_idle() {
    let idle = IDLE.load(Ordering::Relaxed);
    if idle != 0 {
        kick_one(idle);
    }
}

#[inline(never)]
fn kick_one(idle: u32) {
    let others = idle & !(1 << percpu::index());
    if others == 0 {
        return;
    }
    let cpu = others.trailing_zeros() as usize;
    IDLE.fetch_and(!(1 << cpu), Ordering::Relaxed);
    send_kick(cpu);
}

/// Wakes every idle processor (no process is left, or work for all).
pub fn kick_all() {
    let others = IDLE.swap(0, Ordering::Relaxed) & !(1 << percpu::index());
    for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0) {
        send_kick(cpu);
    }
}

fn send_kick(cpu: usize) {
    lapic::send_to(cpu, RESCHED_VECTOR);
}

/// A reschedule IPI arrived: acknowledge it; the idle loop it woke goes back to the scheduler.
pub fn rescheduled() {
    lapic::eoi();
    RECEIVED[percpu::index()].fetch_add(1, Ordering::Relaxed);
    KERNEL.with(|k| publish(&mut k.stats));
}

/// Copies the big kernel lock's counters, the TLB shootdowns and the IPIs each processor sent
/// and took into the stats page (on the paths only several processors take: reschedule IPIs, other
/// processors' ticks, the idle loop, shootdowns, the end). Called with the lock held.
pub fn publish(stats: &mut Stats) {
    let counts = KERNEL_LOCK.counts();
    stats.update(|page| {
        page.lock_acquisitions = counts.acquisitions;
        page.lock_contended = counts.contended;
        page.lock_spins = counts.spins;
        page.tlb_shootdowns = shootdown::sent();
        for (cpu, figures) in page.cpus.iter_mut().enumerate() {
            figures.ipis_sent = lapic::ipis_sent(cpu);
            figures.ipis_received = RECEIVED[cpu].load(Ordering::Relaxed) + shootdown::answered(cpu);
        }
    });
}

/// The idle loop's halt with several processors: marks this processor idle and lets go of the
/// lock, halts until an interrupt, then takes the lock back. It keeps the last process's page
/// tables (see the module's text).
pub fn idle_wait() {
    let bit = 1 << percpu::index();
    IDLE.fetch_or(bit, Ordering::Relaxed);
    KERNEL_LOCK.leave();
    cpu::wait_for_interrupt();
    KERNEL_LOCK.enter();
    IDLE.fetch_and(!bit, Ordering::Relaxed);
    KERNEL.with(|k| publish(&mut k.stats));
}
