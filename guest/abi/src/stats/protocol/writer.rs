//! The writer half of the stats-page protocol (see [`super`]): the kernel, one guest processor
//! at a time (the big kernel lock orders them), publishes with volatile writes kept in order by
//! compiler fences (x86 keeps stores in order: the host sees them as written).

use core::sync::atomic::{compiler_fence, Ordering};

use crate::stats::{ProcStats, StatsPage, ENDED, EVENTS};

impl StatsPage {
    /// Runs `f` on the counters inside one seqlock write section.
    pub fn update<R>(&mut self, f: impl FnOnce(&mut StatsPage) -> R) -> R {
        // SAFETY: a plain u64 field of this page; volatile so the reader sees each step.
        unsafe { core::ptr::write_volatile(&mut self.seq, self.seq.wrapping_add(1)) };
        compiler_fence(Ordering::SeqCst);
        let r = f(self);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut self.seq, self.seq.wrapping_add(1)) };
        r
    }

    /// Appends an event to the event ring (its own `seq` is written 0 first and `n + 1` last).
    pub fn push_event(&mut self, tsc: u64, kind: u8, cpu: u8, pid: u16, arg: u32) {
        let n = self.events_written;
        let slot = &mut self.events[(n as usize) & (EVENTS - 1)];
        // SAFETY: a plain u64 field of this page; seq 0 marks the entry as being rewritten.
        unsafe { core::ptr::write_volatile(&mut slot.seq, 0) };
        compiler_fence(Ordering::SeqCst);
        slot.tsc = tsc;
        slot.kind = kind;
        slot.cpu = cpu;
        slot.pid = pid;
        slot.arg = arg;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut slot.seq, n + 1) };
        compiler_fence(Ordering::SeqCst);
        // SAFETY: a plain u64 field of this page, published after the entry it counts.
        unsafe { core::ptr::write_volatile(&mut self.events_written, n + 1) };
    }

    /// Appends an ended process's final accounting to the ring of ended processes.
    pub fn push_ended(&mut self, proc: ProcStats) {
        let n = self.ended_written;
        let entry = &mut self.ended[(n as usize) & (ENDED - 1)];
        // SAFETY: a plain u64 field of this page; seq 0 marks the entry as being rewritten.
        unsafe { core::ptr::write_volatile(&mut entry.seq, 0) };
        compiler_fence(Ordering::SeqCst);
        entry.proc = proc;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut entry.seq, n + 1) };
        compiler_fence(Ordering::SeqCst);
        // SAFETY: a plain u64 field of this page, published after the entry it counts.
        unsafe { core::ptr::write_volatile(&mut self.ended_written, n + 1) };
    }
}
