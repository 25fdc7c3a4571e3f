//! GDB's breakpoints and watchpoints on [`VcpuTarget`]: each kind served as this host's KVM
//! allows (`measure.rs`): `break` as an `int3` in guest memory (`int3.rs`) or in a debug
//! register, `hbreak` and `watch` in DR0–DR3 (`debugregs.rs`), or refused with a line that says
//! what lde measured.

use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind,
};
use gdbstub::target::{TargetError, TargetResult};

use super::debugregs::{Refused, Slot, Use, SLOTS};
use super::measure::SoftwareBreaks;
use super::target::VcpuTarget;

impl VcpuTarget<'_> {
    pub(super) fn add_slot(&mut self, slot: Slot) -> TargetResult<bool, Self> {
        match self.slots.add(slot) {
            Ok(()) => Ok(true),
            Err(Refused::Full) => {
                log::warn!(
                    "gdb: all {SLOTS} debug registers are taken: lde serves breakpoints and watchpoints with \
                     DR0-DR3, so at most {SLOTS} at once (delete one, or disable it)"
                );
                Ok(false)
            }
            Err(Refused::BadLength) => {
                log::warn!("gdb: a watchpoint covers 1, 2, 4 or 8 bytes at an address aligned to its length");
                Ok(false)
            }
        }
    }
}

impl Breakpoints for VcpuTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for VcpuTarget<'_> {
    /// An `int3` written into guest memory where this KVM reports one; a debug register where
    /// it does not but stops at those (PVM, where `int3` in ring 0 is fatal); refused where it
    /// stops at neither (see `measure.rs`).
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.measured.software_breaks(self.ring3_blind) {
            SoftwareBreaks::Int3 => {
                let paging = self.paging(0).map_err(|_| TargetError::NonFatal)?;
                let Ok((phys, _)) = paging.translate(&self.mem, addr) else {
                    return Err(TargetError::Errno(libc::EFAULT as u8));
                };
                match self.int3s.insert(&self.mem, addr, phys) {
                    true => Ok(true),
                    false => Err(TargetError::Errno(libc::EFAULT as u8)),
                }
            }
            SoftwareBreaks::DebugRegisters => self.add_slot(Slot { addr, what: Use::Execute { software: true } }),
            SoftwareBreaks::Refused => {
                eprintln!(
                    "lde: gdb: this KVM stops at no breakpoint ({}; docs/platform.md): breakpoints cannot be \
                     set here (stepi works)",
                    self.measured.findings()
                );
                Ok(false)
            }
        }
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.int3s.remove(&self.mem, addr)
            || self.slots.remove(Slot { addr, what: Use::Execute { software: true } }))
    }
}

impl HwBreakpoint for VcpuTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !self.measured.hw_breakpoint {
            eprintln!(
                "lde: gdb: this KVM does not stop at a breakpoint in a debug register ({}; docs/platform.md): \
                 hardware breakpoints cannot be set here",
                self.measured.findings()
            );
            return Ok(false);
        }
        self.add_slot(Slot { addr, what: Use::Execute { software: false } })
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.remove(Slot { addr, what: Use::Execute { software: false } }))
    }
}

impl HwWatchpoint for VcpuTarget<'_> {
    /// Refused on PVM: its ring 0 is KVM's instruction emulator, which checks execute
    /// breakpoints but never data breakpoints, and ring 3 never reports one (measured,
    /// docs/platform.md); a watchpoint there would be silently deaf.
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if self.ring3_blind {
            eprintln!(
                "lde: gdb: this host (PVM) reports no data breakpoints: hardware watchpoints cannot be set \
                 (GDB's software watchpoints, `set can-use-hw-watchpoints 0`, work in ring 0)"
            );
            return Ok(false);
        }
        if !self.measured.watchpoint {
            eprintln!(
                "lde: gdb: this KVM does not stop at a data breakpoint ({}; docs/platform.md): hardware \
                 watchpoints cannot be set here (GDB's software watchpoints, `set can-use-hw-watchpoints 0`, work)",
                self.measured.findings()
            );
            return Ok(false);
        }
        let len = u8::try_from(len).unwrap_or(0);
        self.add_slot(Slot { addr, what: Use::Watch { kind, len } })
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        let len = u8::try_from(len).unwrap_or(0);
        Ok(self.slots.remove(Slot { addr, what: Use::Watch { kind, len } }))
    }
}
