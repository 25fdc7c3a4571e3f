//! What the CPU does when no process is ready: halt with interrupts on until one wakes.

/// Halts until an interrupt (timer tick, serial input) has been handled.
pub fn wait_for_work() {
    // `sti; hlt` is atomic with respect to interrupts (the interrupt shadow of sti covers the
    // hlt), so a wake-up cannot slip in between the check that found nothing ready and the halt.
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
