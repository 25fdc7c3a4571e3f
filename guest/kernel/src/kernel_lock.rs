//! The big kernel lock: once other processors run (`lde.cpus`), a processor holds it whenever it
//! runs kernel code, except while it halts in the idle loop, so the kernel's state (every
//! `Global`, the run queue, the devices) is only ever used by one processor at a time, as on one
//! CPU. Linux had one until 2.6.39; xv6 holds its process-table lock across a switch the same
//! way this one is held.
//!
//! - Every trap takes it (trap.rs's `trap_dispatch_smp`, which `entry.rs`'s `trap_common_smp`
//!   calls) and
//!   releases it on the way out, except an NMI, which touches nothing of the kernel's.
//! - It belongs to the processor, not to the process: a process that gives up the CPU in the
//!   kernel does so with the lock held, and the processor's scheduler goes on with it; when the
//!   process resumes (on whichever processor picks it), its trap releases the lock of that
//!   processor on the way out. A new process's first return releases it (`new_process_smp`).
//! - The idle loop releases it before `sti; hlt` and takes it again after.
//! - A trap taken while this processor already holds it (a fault in the kernel itself) does not
//!   take it again: it would wait for ever on itself.
//!
//! With one processor none of this runs: `entry.rs` calls `trap_dispatch` directly and the
//! one-processor paths keep their instruction counts (`tests/insn-baseline`).
//!
//! Counted, and shown in the stats page (`lock_*`): acquisitions, acquisitions that found it
//! held (contended), and the spins they waited.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::percpu;

/// The lock and its counters.
pub struct KernelLock {
    /// 0 when free, else 1 + the index of the processor that holds it.
    owner: AtomicU32,
    /// Counted by the holder (so plain load-and-store is enough).
    acquisitions: AtomicU64,
    contended: AtomicU64,
    spins: AtomicU64,
}

/// The big kernel lock.
pub static KERNEL_LOCK: KernelLock = KernelLock {
    owner: AtomicU32::new(0),
    acquisitions: AtomicU64::new(0),
    contended: AtomicU64::new(0),
    spins: AtomicU64::new(0),
};

/// Whether other processors run (the lock is in use).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// What the lock counted: acquisitions, contended acquisitions, spins.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockCounts {
    pub acquisitions: u64,
    pub contended: u64,
    pub spins: u64,
}

impl KernelLock {
    /// Takes the lock for this processor; false (and nothing done) if it holds it already.
    pub fn enter(&self) -> bool {
        let me = percpu::index() as u32 + 1;
        match self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => {}
            Err(owner) if owner == me => return false,
            Err(_) => self.wait(me),
        }
        let n = self.acquisitions.load(Ordering::Relaxed);
        self.acquisitions.store(n + 1, Ordering::Relaxed);
        true
    }

    /// Waits until the lock is free and takes it (test-and-test-and-set).
    #[cold]
    #[inline(never)]
    fn wait(&self, me: u32) {
        let mut spins = 0u64;
        loop {
            while self.owner.load(Ordering::Relaxed) != 0 {
                // The holder may be waiting for this processor to answer a TLB shootdown, whose
                // IPI cannot arrive here (interrupts are off).
                crate::shootdown::answer();
                core::hint::spin_loop();
                spins += 1;
            }
            if self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                break;
            }
        }
        // Held now: plain updates are safe.
        self.contended.store(self.contended.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.spins.store(self.spins.load(Ordering::Relaxed).saturating_add(spins), Ordering::Relaxed);
    }

    /// Releases the lock (this processor holds it).
    pub fn leave(&self) {
        debug_assert_eq!(self.owner.load(Ordering::Relaxed), percpu::index() as u32 + 1);
        self.owner.store(0, Ordering::Release);
    }

    /// What it counted (read by the holder).
    pub fn counts(&self) -> LockCounts {
        LockCounts {
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            spins: self.spins.load(Ordering::Relaxed),
        }
    }
}

/// Whether other processors run, so that the lock is in use.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Puts the lock in use and takes it for the bootstrap processor: from here on every trap takes
/// it (`entry::use_common_path`).
///
/// # Safety
/// Once, on the bootstrap processor, interrupts off, before it starts another processor.
pub unsafe fn activate() {
    ACTIVE.store(true, Ordering::Relaxed);
    KERNEL_LOCK.enter();
    // SAFETY: the caller's contract; this processor holds the lock from here on.
    unsafe { crate::arch::entry::use_common_path(crate::arch::entry::CommonPath::Smp) };
}

/// Releases the lock on a new process's first way out (`entry.rs`'s `new_process_smp`).
#[no_mangle]
extern "C" fn kernel_lock_leave() {
    KERNEL_LOCK.leave();
}
