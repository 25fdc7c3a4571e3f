//! The vCPU as gdbstub's target: registers, memory through the guest's page tables, resume and
//! single step with KVM guest debugging, breakpoints (`int3` in guest memory or DR0–DR3, as
//! this host allows) and watchpoints in DR0–DR3, and the blocking event loop that runs the guest
//! between GDB's commands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::clock::StopClock;
use super::debugregs::{Slot, Slots, Use, DR6_BS, SLOTS};
use super::int3::Int3s;
use super::measure::Measured;
use super::paging::Paging;
use crate::devices::Devices;
use crate::vcpu::{self, VcpuEnd};
use crate::vmexit::{handle_vmexit, Action, VmExitCounts};

/// The #BP vector, as `KVM_EXIT_DEBUG` names an `int3`.
const BP_VECTOR: u32 = 3;

/// Why the target cannot go on (gdbstub ends the session with it).
#[derive(Debug)]
pub enum TargetFault {
    /// lde is stopping (Ctrl-C, a signal, --timeout).
    Stopping,
    /// A KVM ioctl failed.
    Kvm(kvm_ioctls::Error),
}

/// How the vCPU is to run when GDB lets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Continue,
    Step,
}

/// What this host's KVM offers a debugger.
#[derive(Clone, Copy, Debug)]
pub struct DebugHost {
    /// KVM can hold off interrupts during a single step (KVM_GUESTDBG_BLOCKIRQ).
    pub block_irq: bool,
    /// The host reports no single step and no breakpoint in ring 3 (PVM).
    pub ring3_blind: bool,
    /// What its guest debugging delivered when lde probed it (`measure.rs`).
    pub measured: Measured,
}

/// The guest's one vCPU, its memory and devices, as GDB sees them.
pub struct VcpuTarget<'a> {
    pub vcpu: &'a mut VcpuFd,
    pub mem: GuestMemoryMmap,
    pub devices: &'a mut Devices,
    pub counts: &'a VmExitCounts,
    pub stop: Arc<AtomicBool>,
    /// How the guest ended while GDB watched, if it did.
    pub end: Option<VcpuEnd>,
    pub clock: StopClock,
    /// KVM can hold off interrupts during a single step (KVM_GUESTDBG_BLOCKIRQ).
    pub block_irq: bool,
    /// The host reports no single step and no breakpoint in ring 3 (PVM): lde carries out a
    /// stepped `iretq` to ring 3 itself (see [`VcpuTarget::step_iretq_to_user`]).
    pub ring3_blind: bool,
    /// What this KVM's guest debugging delivered when lde probed it (`measure.rs`).
    pub(super) measured: Measured,
    pub(super) slots: Slots,
    /// Software breakpoints written into guest memory (hosts whose KVM reports `int3`).
    pub(super) int3s: Int3s,
    mode: Mode,
    /// The debug registers KVM was last given, to set them again only when they change.
    armed: Option<kvm_guest_debug>,
    /// Stepping over the execute breakpoint at this address before continuing.
    stepping_over: Option<u64>,
}

impl<'a> VcpuTarget<'a> {
    pub fn new(
        vcpu: &'a mut VcpuFd,
        mem: GuestMemoryMmap,
        devices: &'a mut Devices,
        counts: &'a VmExitCounts,
        stop: Arc<AtomicBool>,
        host: DebugHost,
    ) -> Self {
        let DebugHost { block_irq, ring3_blind, measured } = host;
        let clock = StopClock::new(vcpu);
        VcpuTarget {
            vcpu,
            mem,
            devices,
            counts,
            stop,
            end: None,
            clock,
            block_irq,
            ring3_blind,
            measured,
            slots: Slots::default(),
            int3s: Int3s::default(),
            mode: Mode::Continue,
            armed: None,
            stepping_over: None,
        }
    }

    /// Turns guest debugging off (GDB detached or went away): the guest runs on as without it.
    pub fn release(&mut self) -> Result<(), kvm_ioctls::Error> {
        self.int3s.clear(&self.mem);
        self.clock.resume(self.vcpu);
        self.vcpu.set_guest_debug(&kvm_guest_debug::default())
    }

    /// Gives KVM the debug control this run needs: single step (also to step over a breakpoint
    /// at the current instruction) and the armed slots.
    ///
    /// On a host blind to ring 3 (PVM) the vCPU is never single-stepped in ring 3: the trap
    /// flag KVM sets would reach the process as a #DB, which the kernel kills it for (measured,
    /// docs/platform.md). A step there runs on, like a continue, and says so.
    fn arm(&mut self) -> Result<(), kvm_ioctls::Error> {
        let rip = self.vcpu.get_regs()?.rip;
        let in_user = self.vcpu.get_sregs()?.cs.dpl == 3;
        let no_step = self.ring3_blind && in_user;
        if no_step && self.mode == Mode::Step {
            eprintln!(
                "lde: gdb: this host (PVM) cannot single-step ring 3: the step runs on and ends where the vCPU \
                 next stops (in the kernel, at a breakpoint, or on Ctrl-C)"
            );
        }
        let skip = self.slots.executes_at(rip).then_some(rip).filter(|_| !no_step);
        self.stepping_over = if self.mode == Mode::Continue { skip } else { None };
        let (addrs, dr7) = self.slots.registers(skip);
        let mut control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
        if !self.int3s.is_empty() {
            control |= KVM_GUESTDBG_USE_SW_BP;
        }
        if (self.mode == Mode::Step && !no_step) || skip.is_some() {
            control |= KVM_GUESTDBG_SINGLESTEP;
            if self.block_irq {
                control |= KVM_GUESTDBG_BLOCKIRQ;
            }
        }
        let mut debugreg = [0u64; 8];
        debugreg[..SLOTS].copy_from_slice(&addrs);
        debugreg[7] = dr7;
        let debug = kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg } };
        if self.armed != Some(debug) {
            self.vcpu.set_guest_debug(&debug)?;
            self.armed = Some(debug);
        }
        Ok(())
    }

    /// Runs the vCPU until something GDB must hear of; `None` when it only needs another look
    /// at the connection (a kick, or a VM exit lde handled).
    pub(super) fn run_once(&mut self) -> Result<Option<SingleThreadStopReason<u64>>, TargetFault> {
        if self.stop.load(Ordering::Acquire) {
            return Err(TargetFault::Stopping);
        }
        if self.mode == Mode::Step && self.ring3_blind && self.step_iretq_to_user().map_err(TargetFault::Kvm)? {
            return Ok(Some(SingleThreadStopReason::DoneStep));
        }
        self.arm().map_err(TargetFault::Kvm)?;
        self.clock.resume(self.vcpu);
        let action = match self.vcpu.run() {
            Ok(VcpuExit::Debug(debug)) => {
                self.clock.stop(self.vcpu);
                log::debug!(
                    "gdb: debug exit: exception {} pc {:#x} dr6 {:#x} dr7 {:#x}",
                    debug.exception,
                    debug.pc,
                    debug.dr6,
                    debug.dr7
                );
                if debug.exception == BP_VECTOR {
                    return self.int3_exit(debug.pc).map_err(TargetFault::Kvm);
                }
                return Ok(self.debug_exit(debug.dr6));
            }
            Ok(exit) => handle_vmexit(exit, self.devices, self.counts),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => return Ok(None),
            Err(e) => return Err(TargetFault::Kvm(e)),
        };
        match action {
            Action::Continue => Ok(None),
            Action::Shutdown(code) => {
                self.end = Some(VcpuEnd::Shutdown(code));
                Ok(Some(SingleThreadStopReason::Exited(code as u8)))
            }
            Action::Crash(crash) => {
                self.clock.stop(self.vcpu);
                self.end = Some(VcpuEnd::Crash(crash, vcpu::dump_registers(self.vcpu)));
                Ok(Some(SingleThreadStopReason::Terminated(Signal::SIGSEGV)))
            }
        }
    }

    /// A KVM_EXIT_DEBUG for an `int3` (KVM_GUESTDBG_USE_SW_BP): lde's breakpoint at `pc`, or
    /// the guest's own `int3` (a program's, in ring 3), which goes back to the guest as the #BP
    /// it was (KVM left RIP at the `int3` and takes the instruction's length from the exit).
    fn int3_exit(&mut self, pc: u64) -> Result<Option<SingleThreadStopReason<u64>>, kvm_ioctls::Error> {
        let mut regs = self.vcpu.get_regs()?;
        if self.int3s.at(pc) {
            // KVM reports RIP at the int3 (VMX and SVM alike); a host that left it after the
            // instruction would have GDB see the wrong pc.
            if regs.rip != pc {
                log::debug!("gdb: int3 exit with rip {:#x}: rewound to the breakpoint at {pc:#x}", regs.rip);
                regs.rip = pc;
                self.vcpu.set_regs(&regs)?;
            }
            return Ok(Some(SingleThreadStopReason::SwBreak(())));
        }
        log::debug!("gdb: the guest's own int3 at {pc:#x}: delivered to it as #BP");
        let mut events = self.vcpu.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.nr = BP_VECTOR as u8;
        events.exception.has_error_code = 0;
        events.exception.error_code = 0;
        self.vcpu.set_vcpu_events(&events)?;
        Ok(None)
    }

    /// What a KVM_EXIT_DEBUG means to GDB.
    fn debug_exit(&mut self, dr6: u64) -> Option<SingleThreadStopReason<u64>> {
        let hit = self.slots.hit(dr6);
        if let Some(over) = self.stepping_over.take() {
            // The step over a breakpoint is done: continue with every slot armed, unless the
            // instruction stepped over touched a watched address.
            if !matches!(hit, Some(Slot { what: Use::Watch { .. }, .. })) {
                log::debug!("gdb: stepped over the breakpoint at {over:#x}");
                return None;
            }
        }
        match hit {
            Some(Slot { what: Use::Execute { software: true }, .. }) => Some(SingleThreadStopReason::SwBreak(())),
            Some(Slot { what: Use::Execute { software: false }, .. }) => Some(SingleThreadStopReason::HwBreak(())),
            Some(Slot { addr, what: Use::Watch { kind, .. } }) => {
                Some(SingleThreadStopReason::Watch { tid: (), kind, addr })
            }
            None if self.mode == Mode::Step || dr6 & DR6_BS != 0 => Some(SingleThreadStopReason::DoneStep),
            None => Some(SingleThreadStopReason::Signal(Signal::SIGTRAP)),
        }
    }

    /// On a host blind to ring 3 (PVM runs ring 3 natively and reports neither a single step
    /// nor a breakpoint there), a single step of an `iretq` from ring 0 to ring 3 would run
    /// the process on to its next kernel entry. lde carries that one instruction out itself, as
    /// the SDM describes it for a return to a 64-bit ring-3 context: RIP, CS, RFLAGS, RSP and
    /// SS from the frame at RSP, the segments loaded as flat ring-3 code and data (what KVM
    /// reports when the guest is stopped in ring 3 there). Returns whether it did.
    fn step_iretq_to_user(&mut self) -> Result<bool, kvm_ioctls::Error> {
        const IRETQ: [u8; 2] = [0x48, 0xcf];
        let mut regs = self.vcpu.get_regs()?;
        let mut sregs = self.vcpu.get_sregs()?;
        let mut code = [0u8; 2];
        let mut frame = [0u8; 40];
        if sregs.cs.dpl != 0
            || self.read_addrs(regs.rip, &mut code).ok() != Some(2)
            || code != IRETQ
            || self.read_addrs(regs.rsp, &mut frame).ok() != Some(40)
        {
            return Ok(false);
        }
        let word = |i: usize| u64::from_le_bytes(frame[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (rip, cs, rflags, rsp, ss) = (word(0), word(1), word(2), word(3), word(4));
        if cs & 3 != 3 || ss & 3 != 3 {
            return Ok(false);
        }
        /// RFLAGS bits iretq never sets from the frame here: RF, VM; bit 1 always reads one.
        const RFLAGS_CLEAR: u64 = (1 << 16) | (1 << 17);
        regs.rip = rip;
        regs.rsp = rsp;
        regs.rflags = (rflags & !RFLAGS_CLEAR) | 0x2;
        let flat = kvm_bindings::kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            present: 1,
            dpl: 3,
            s: 1,
            g: 1,
            ..Default::default()
        };
        sregs.cs = kvm_bindings::kvm_segment { selector: cs as u16, type_: 0xb, l: 1, db: 0, ..flat };
        sregs.ss = kvm_bindings::kvm_segment { selector: ss as u16, type_: 0x3, l: 0, db: 1, ..flat };
        self.vcpu.set_sregs(&sregs)?;
        self.vcpu.set_regs(&regs)?;
        log::debug!("gdb: carried out the iretq to ring 3 at {rip:#x} (this host reports no step in ring 3)");
        Ok(true)
    }

    pub(super) fn paging(&self) -> Result<Paging, kvm_ioctls::Error> {
        let s = self.vcpu.get_sregs()?;
        Ok(Paging { cr0: s.cr0, cr3: s.cr3, efer: s.efer })
    }

    /// Copies between `data` and guest memory at `start` (virtual), page by page; how many
    /// bytes could be reached.
    fn access(
        &mut self,
        start: u64,
        len: usize,
        mut copy: impl FnMut(&GuestMemoryMmap, vm_memory::GuestAddress, std::ops::Range<usize>) -> bool,
    ) -> TargetResult<usize, Self> {
        let paging = self.paging().map_err(|_| TargetError::NonFatal)?;
        let mut done = 0;
        while done < len {
            let Ok((phys, room)) = paging.translate(&self.mem, start.wrapping_add(done as u64)) else { break };
            let n = (room as usize).min(len - done);
            if !copy(&self.mem, phys, done..done + n) {
                break;
            }
            done += n;
        }
        match done {
            0 if len > 0 => Err(TargetError::Errno(libc::EFAULT as u8)),
            n => Ok(n),
        }
    }
}

impl Target for VcpuTarget<'_> {
    type Arch = X86_64_SSE;
    type Error = TargetFault;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    /// lde serves software breakpoints itself (an `int3` it tracks, or a debug register): GDB
    /// must never write `int3` into guest memory on its own.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl SingleThreadBase for VcpuTarget<'_> {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        super::registers::read(self.vcpu, regs).map_err(|_| TargetError::NonFatal)
    }

    /// Writes the general registers, RIP and RFLAGS, and the x87/SSE state; segment selectors
    /// are not written (a selector alone would not load its descriptor).
    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        super::registers::write(self.vcpu, regs).map_err(|_| TargetError::NonFatal)
    }

    /// Reads memory as the guest sees it, lde's `int3`s shown as the bytes they replaced.
    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let len = data.len();
        let int3s = std::mem::take(&mut self.int3s);
        let read = self.access(start, len, |mem, phys, range| {
            let chunk = &mut data[range];
            let ok = mem.read_slice(chunk, phys).is_ok();
            int3s.hide(phys, chunk);
            ok
        });
        self.int3s = int3s;
        read
    }

    /// Writes memory; a byte written over one of lde's `int3`s is kept under it.
    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let mut int3s = std::mem::take(&mut self.int3s);
        let written = self.access(start, data.len(), |mem, phys, range| {
            let chunk = &data[range];
            let ok = mem.write_slice(chunk, phys).is_ok();
            int3s.rewrite(mem, phys, chunk);
            ok
        });
        self.int3s = int3s;
        let written = written?;
        match written == data.len() {
            true => Ok(()),
            false => Err(TargetError::Errno(libc::EFAULT as u8)),
        }
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for VcpuTarget<'_> {
    /// Continues; a signal GDB would pass to the target is dropped (a VM has no signals).
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.mode = Mode::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for VcpuTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.mode = Mode::Step;
        Ok(())
    }
}
