//! What the CPU does when no process is ready: halt with interrupts on until one wakes.

use lde_abi::stats::EV_IDLE;

use crate::arch::cpu::{self, rdtsc};
use crate::arch::percpu;
use crate::time::{self, TimerMode};
use crate::{counters, kernel_lock, resched};

/// Halts until an interrupt (timer tick, sleeper's deadline, serial input, a reschedule IPI) has
/// been handled.
/// `next_wake` is the earliest sleeper's deadline, which needs its own interrupt when no
/// periodic tick runs.
pub fn wait_for_work(next_wake: Option<u64>) {
    if time::mode() == TimerMode::None {
        if let Some(deadline) = next_wake {
            time::wake_at(deadline);
        }
    }
    let start = rdtsc();
    counters::update(|page| counters::event(page, start, EV_IDLE, 0, 0));
    if kernel_lock::active() {
        resched::idle_wait();
    } else {
        cpu::wait_for_interrupt();
    }
    let end = rdtsc();
    let index = percpu::index();
    counters::update(|page| {
        page.idle_cycles += end - start;
        page.cpus[index].idle_cycles += end - start;
    });
}
