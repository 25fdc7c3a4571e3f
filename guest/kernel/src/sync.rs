//! Global kernel state, reached only through closures, by one processor at a time.
//!
//! [`Global::with`] lends `&mut T` to a closure and marks the global busy while it runs; a
//! nested `with` of the same global (a trap handler reached while the state was lent, or a
//! context switch inside the closure that runs code which borrows it again) is a kernel bug and
//! panics instead of creating a second mutable reference. No function hands out a reference or
//! a pointer that outlives its closure, so no safe code can hold two `&mut` to one global, nor
//! reach the value around the busy flag. (What the CPU or the host must reach by address, such
//! as the RSPs `switch` saves, lives outside any `Global`.)

use core::cell::{Cell, UnsafeCell};

/// A global the kernel reaches only through [`Global::with`].
///
/// `repr(C)` with the value first: a global exported by name would start at its symbol's
/// address with exactly the layout of its value, the busy flag after it. (None is exported now:
/// the stats page, which the host reads by name, is `stats.rs`'s, reached through `KERNEL`.)
#[repr(C)]
pub struct Global<T> {
    value: UnsafeCell<T>,
    busy: Cell<bool>,
}

// SAFETY: every access to the value goes through `with` (the type has no other accessor). Only
// one processor at a time runs kernel code (with several, only the holder of the big kernel
// lock: kernel_lock.rs, whose Acquire and Release order the value's accesses between them), so
// `with` is never entered from two processors at once; within the processor, the busy flag
// turns every overlapping access (an interrupt or trap handler entered while a closure runs,
// or a nested call) into a panic before a second reference exists. `T: Send`: whatever context
// runs the closure (boot code, a trap handler, another process's kernel stack) gets the value,
// so it must be free to move between them.
unsafe impl<T: Send> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Self { value: UnsafeCell::new(value), busy: Cell::new(false) }
    }

    /// Runs `f` with exclusive access to the value.
    ///
    /// # Panics
    /// If the value is already lent (a nested `with` of the same global): a kernel bug.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        if self.busy.replace(true) {
            reentered();
        }
        // SAFETY: the busy flag was clear, so no other reference to the value exists, and none
        // can be made until it is cleared below.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.set(false);
        r
    }

    /// Whether the value is lent out right now (a `with` closure of it is running): for
    /// assertions that no borrow is held across a context switch.
    #[inline(always)]
    pub fn is_lent(&self) -> bool {
        self.busy.get()
    }
}

#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("kernel bug: a global was borrowed while already lent")
}
