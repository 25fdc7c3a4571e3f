//! Reschedule IPIs and the idle processors: with several processors (`lde.cpus`), one that makes
//! a process ready while another halts idle wakes that one with an IPI on `RESCHED_VECTOR`, so
//! no ready process waits while a processor idles ([`kick_idle`], called wherever a process
//! becomes ready: spawn, wake-ups, preemption, a child's end).
//!
//! An idle processor first loads the kernel's page tables ([`idle_wait`]): it never keeps a
//! process's address space (and with it TLB entries) while that process may run, end or be
//! freed elsewhere. lde's processes are single-threaded and lde does not use PCIDs, so loading
//! CR3 on the processor that picks a process is the only TLB flush a switch needs.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use lde_kcore::mptable::MAX_CPUS;

use crate::arch::vectors::RESCHED_VECTOR;
use crate::arch::{cpu, lapic, paging, percpu};
use crate::counters;
use crate::kernel_lock::KERNEL_LOCK;

/// The LAPIC id of each processor.
static APIC_OF_CPU: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// The processors halted in the idle loop, one bit each (set and cleared by each under the
/// lock; a kick clears the bit of the one it wakes, so two kicks wake two).
static IDLE: AtomicU32 = AtomicU32::new(0);

/// Notes processor `cpu`'s LAPIC id (before it is started).
pub fn set_apic_id(cpu: usize, apic_id: u8) {
    APIC_OF_CPU[cpu].store(apic_id, Ordering::Relaxed);
}

/// Processor `cpu`'s LAPIC id.
pub fn apic_id(cpu: usize) -> u8 {
    APIC_OF_CPU[cpu].load(Ordering::Relaxed)
}

/// Wakes an idle processor other than this one, if there is one, for a process just made
/// ready. Called with the lock held. One test where no processor idles (always, with one
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
    let others = idle & !(1 << percpu::this().index());
    if others == 0 {
        return;
    }
    let cpu = others.trailing_zeros() as usize;
    IDLE.fetch_and(!(1 << cpu), Ordering::Relaxed);
    send_kick(cpu);
}

/// Wakes every idle processor (no process is left, or work for all).
pub fn kick_all() {
    let others = IDLE.swap(0, Ordering::Relaxed) & !(1 << percpu::this().index());
    for cpu in (0..MAX_CPUS).filter(|c| others & (1 << c) != 0) {
        send_kick(cpu);
    }
}

fn send_kick(cpu: usize) {
    lapic::send_fixed(APIC_OF_CPU[cpu].load(Ordering::Relaxed), RESCHED_VECTOR);
    let index = percpu::index();
    counters::update(|page| page.cpus[index].ipis_sent += 1);
}

/// A reschedule IPI arrived: acknowledge it; the idle loop it woke goes back to the scheduler.
pub fn rescheduled() {
    lapic::eoi();
    let index = percpu::index();
    counters::update(|page| page.cpus[index].ipis_received += 1);
    publish_lock();
}

/// Copies the big kernel lock's counters into the stats page (on the paths only several
/// processors take: reschedule IPIs, other processors' ticks, the idle loop, the end).
pub fn publish_lock() {
    let counts = KERNEL_LOCK.counts();
    counters::update(|page| {
        page.lock_acquisitions = counts.acquisitions;
        page.lock_contended = counts.contended;
        page.lock_spins = counts.spins;
    });
}

/// The idle loop's halt with several processors: loads the kernel's page tables, marks this
/// processor idle and lets go of the lock, halts until an interrupt, then takes the lock back.
pub fn idle_wait() {
    let bit = 1 << percpu::this().index();
    paging::activate_kernel();
    IDLE.fetch_or(bit, Ordering::Relaxed);
    KERNEL_LOCK.leave();
    cpu::wait_for_interrupt();
    KERNEL_LOCK.enter();
    IDLE.fetch_and(!bit, Ordering::Relaxed);
    publish_lock();
}
