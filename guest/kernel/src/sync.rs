//! Global kernel state on one CPU.

use core::cell::UnsafeCell;

/// A global that the kernel accesses only with interrupts off on its one CPU. Transparent, so
/// an exported global (the stats page) has exactly the layout of its value.
#[repr(transparent)]
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: lde runs one CPU, and kernel code runs with interrupts off (interrupt gates and the
// syscall mask clear IF; the idle loop enables them only around `hlt`), so accesses through
// `get` never run concurrently. `get`'s contract rules out overlapping references.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The value.
    ///
    /// # Safety
    /// Interrupts must be off, and the reference must be dropped before another `get` of the
    /// same global and before any context switch.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.0.get() }
    }
}
