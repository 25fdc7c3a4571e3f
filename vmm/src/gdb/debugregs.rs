//! The four x86 debug-register slots (DR0–DR3) and the DR7 value that arms them: GDB's hardware
//! breakpoints and watchpoints, and its software breakpoints too (see `mod.rs`: lde serves
//! those with the debug registers, because `int3` in ring 0 kills a PVM guest).

use gdbstub::target::ext::breakpoints::WatchKind;

/// How many breakpoints and watchpoints the CPU can hold at once.
pub const SLOTS: usize = 4;

/// DR7.GE (exact data breakpoints; recommended by the SDM when any slot is armed).
const DR7_GE: u64 = 1 << 9;

/// What a slot does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Stop before executing the instruction at the address; `software` when GDB asked for a
    /// software breakpoint (it is told `SwBreak` then).
    Execute { software: bool },
    /// Stop after an access of `len` bytes (1, 2, 4 or 8, aligned).
    Watch { kind: WatchKind, len: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub addr: u64,
    pub what: Use,
}

/// Why a breakpoint or watchpoint cannot be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// All four slots are taken.
    Full,
    /// The CPU watches 1, 2, 4 or 8 aligned bytes.
    BadLength,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots(pub [Option<Slot>; SLOTS]);

impl Slots {
    /// Takes a free slot; the same request twice takes one slot (GDB re-inserts breakpoints).
    pub fn add(&mut self, slot: Slot) -> Result<(), Refused> {
        if let Use::Watch { len, .. } = slot.what {
            if !matches!(len, 1 | 2 | 4 | 8) || slot.addr % u64::from(len) != 0 {
                return Err(Refused::BadLength);
            }
        }
        if self.0.contains(&Some(slot)) {
            return Ok(());
        }
        let free = self.0.iter_mut().find(|s| s.is_none()).ok_or(Refused::Full)?;
        *free = Some(slot);
        Ok(())
    }

    /// Frees the slot holding exactly this; false when none does.
    pub fn remove(&mut self, slot: Slot) -> bool {
        match self.0.iter_mut().find(|s| **s == Some(slot)) {
            Some(s) => {
                *s = None;
                true
            }
            None => false,
        }
    }

    /// DR0–DR3 and DR7 for these slots, leaving out the execute breakpoints at `skip` (the
    /// instruction a resume must first step over, or it would stop there again at once).
    pub fn registers(&self, skip: Option<u64>) -> ([u64; SLOTS], u64) {
        let mut addrs = [0; SLOTS];
        let mut dr7 = 0;
        for (i, slot) in self.0.iter().enumerate() {
            let Some(slot) = slot else { continue };
            if matches!(slot.what, Use::Execute { .. }) && Some(slot.addr) == skip {
                continue;
            }
            addrs[i] = slot.addr;
            let (rw, len) = match slot.what {
                Use::Execute { .. } => (0b00, 0b00),
                Use::Watch { kind, len } => (
                    match kind {
                        WatchKind::Write => 0b01,
                        WatchKind::Read | WatchKind::ReadWrite => 0b11,
                    },
                    match len {
                        1 => 0b00,
                        2 => 0b01,
                        8 => 0b10,
                        _ => 0b11,
                    },
                ),
            };
            dr7 |= 0b10 << (2 * i); // G0..G3: enabled whatever task runs
            dr7 |= (rw | (len << 2)) << (16 + 4 * i);
        }
        if dr7 != 0 {
            dr7 |= DR7_GE;
        }
        (addrs, dr7)
    }

    /// The armed slot DR6 reports as hit (bits 0–3), if any.
    pub fn hit(&self, dr6: u64) -> Option<Slot> {
        (0..SLOTS).find(|i| dr6 & (1 << i) != 0).and_then(|i| self.0[i])
    }

    /// Whether an execute breakpoint sits at `addr`.
    pub fn executes_at(&self, addr: u64) -> bool {
        self.0.iter().flatten().any(|s| s.addr == addr && matches!(s.what, Use::Execute { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BP: Use = Use::Execute { software: false };

    #[test]
    fn four_slots_then_refused_and_freed_again() {
        let mut slots = Slots::default();
        for i in 0..4 {
            slots.add(Slot { addr: 0x1000 + i, what: BP }).unwrap();
        }
        slots.add(Slot { addr: 0x1001, what: BP }).unwrap(); // the same again: no new slot
        assert_eq!(slots.add(Slot { addr: 0x2000, what: BP }), Err(Refused::Full));
        assert!(slots.remove(Slot { addr: 0x1002, what: BP }));
        assert!(!slots.remove(Slot { addr: 0x1002, what: BP }));
        slots.add(Slot { addr: 0x2000, what: BP }).unwrap();
        assert_eq!(slots.0[2].unwrap().addr, 0x2000);
    }

    #[test]
    fn dr7_encodes_kind_length_and_skips_the_stepped_over_breakpoint() {
        let mut slots = Slots::default();
        slots.add(Slot { addr: 0x10_0000, what: BP }).unwrap();
        slots.add(Slot { addr: 0x20_0008, what: Use::Watch { kind: WatchKind::Write, len: 8 } }).unwrap();
        slots.add(Slot { addr: 0x30_0004, what: Use::Watch { kind: WatchKind::ReadWrite, len: 4 } }).unwrap();
        let (addrs, dr7) = slots.registers(None);
        assert_eq!(addrs, [0x10_0000, 0x20_0008, 0x30_0004, 0]);
        // G0 G1 G2, GE; slot 1: RW=01 LEN=10; slot 2: RW=11 LEN=11.
        assert_eq!(dr7, 0b10_1010 | DR7_GE | (0b1001 << 20) | (0b1111 << 24));
        let (addrs, dr7) = slots.registers(Some(0x10_0000));
        assert_eq!(addrs[0], 0);
        assert_eq!(dr7 & 0b11, 0);
        // DR6.BS (bit 14, a single step) beside a slot's bit does not hide the slot.
        assert_eq!(slots.hit(0b10 | 1 << 14).unwrap().addr, 0x20_0008);
        assert_eq!(slots.hit(1 << 14), None);
        assert!(slots.executes_at(0x10_0000) && !slots.executes_at(0x20_0008));
    }

    #[test]
    fn watch_lengths_the_cpu_cannot_do_are_refused() {
        let mut slots = Slots::default();
        let watch = |addr, len| Slot { addr, what: Use::Watch { kind: WatchKind::Write, len } };
        assert_eq!(slots.add(watch(0x1000, 3)), Err(Refused::BadLength));
        assert_eq!(slots.add(watch(0x1004, 8)), Err(Refused::BadLength));
        assert_eq!(slots.add(watch(0x1004, 4)), Ok(()));
    }
}
