//! What the CPU does when no process is ready: halt with interrupts on until one wakes.

use lde_abi::stats::EV_IDLE;

use crate::stats;
use crate::time::{self, rdtsc, TimerMode};

/// Halts until an interrupt (timer tick, sleeper's deadline, serial input) has been handled.
/// `next_wake` is the earliest sleeper's deadline, which needs its own interrupt when no
/// periodic tick runs.
pub fn wait_for_work(next_wake: Option<u64>) {
    if time::mode() == TimerMode::None {
        if let Some(deadline) = next_wake {
            time::wake_at(deadline);
        }
    }
    let start = rdtsc();
    stats::update(|page| stats::event(page, start, EV_IDLE, 0, 0));
    // `sti; hlt` is atomic with respect to interrupts (the interrupt shadow of sti covers the
    // hlt), so a wake-up cannot slip in between the check that found nothing ready and the halt.
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
    let end = rdtsc();
    stats::update(|page| page.idle_cycles += end - start);
}
