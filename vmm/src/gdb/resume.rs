//! Running the machine between GDB's commands: arm each vCPU's debug control, hide the time
//! GDB held the machine, let the vCPUs run (vCPU 0 on this thread, the others on theirs, see
//! `aps.rs`), and when one stops for GDB, pause all of them before GDB hears of it (all-stop).

use std::time::Duration;

use gdbstub::common::Signal;
use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::aps::ApStop;
use super::debugregs::{Slot, Use, SLOTS};
use super::target::{fd_of, tid, Mode, StopReason, TargetFault, VcpuTarget};
use crate::vcpu::{self, VcpuEnd};
use crate::vmexit::handle_vmexit;

/// The #BP vector, as `KVM_EXIT_DEBUG` names an `int3`.
const BP_VECTOR: u32 = 3;
/// How long the stub waits for another vCPU's stop before it looks at the connection again,
/// while vCPU 0 does not run (the kick timer's period).
const LOOK_AGAIN: Duration = Duration::from_millis(50);

impl VcpuTarget<'_> {
    /// Lets the vCPUs run as GDB's resume actions say (a vCPU GDB did not name continues,
    /// unless GDB locks the scheduler): arms each, hides the time stopped, releases them.
    pub(super) fn start(&mut self) -> Result<(), TargetFault> {
        let locked = self.locked;
        for cpu in self.cpus.iter_mut().filter(|c| c.mode.is_none() && !locked) {
            cpu.mode = Some(Mode::Continue);
        }
        for cpu in 0..self.cpus.len() {
            if self.cpus[cpu].mode == Some(Mode::Step)
                && self.ring3_blind
                && self.step_return_to_user(cpu).map_err(TargetFault::Kvm)?
            {
                self.pending = Some(StopReason::SignalWithThread { tid: tid(cpu), signal: Signal::SIGTRAP });
                return Ok(());
            }
        }
        for cpu in 0..self.cpus.len() {
            self.arm(cpu).map_err(TargetFault::Kvm)?;
        }
        self.resume_clock();
        self.aps.resume(self.cpus[1..].iter().map(|c| c.mode.is_some()));
        Ok(())
    }

    /// Stops every vCPU (vCPU 0 is out of `KVM_RUN` on this thread) and the guest's clock.
    pub(super) fn pause(&mut self) {
        self.aps.pause_all();
        self.clock.stop();
    }

    /// Moves every vCPU's TSC back by the time the machine was stopped (all by the same
    /// amount, so that their TSCs stay in step).
    pub(super) fn resume_clock(&mut self) {
        let guards: Vec<_> = (1..self.cpus.len()).map(|cpu| self.aps.fd(cpu)).collect();
        let fds: Vec<&VcpuFd> = std::iter::once(&*self.vcpu).chain(guards.iter().map(|g| &**g)).collect();
        self.clock.resume(&fds);
    }

    /// Gives vCPU `cpu` the debug control its run needs: single step (also to step over a
    /// breakpoint at its current instruction) and the armed slots. A vCPU that stays stopped
    /// keeps what it had.
    ///
    /// On a host blind to ring 3 (PVM) a vCPU is never single-stepped in ring 3: the trap flag
    /// KVM sets would reach the process as a #DB, which the kernel kills it for (measured,
    /// docs/platform.md). A step there runs on, like a continue, and says so.
    fn arm(&mut self, cpu: usize) -> Result<(), kvm_ioctls::Error> {
        let Some(mode) = self.cpus[cpu].mode else { return Ok(()) };
        let fd = fd_of(self.vcpu, &self.aps, cpu);
        let rip = fd.get_regs()?.rip;
        let in_user = fd.get_sregs()?.cs.dpl == 3;
        let no_step = self.ring3_blind && in_user;
        if no_step && mode == Mode::Step {
            eprintln!(
                "lde: gdb: this host (PVM) cannot single-step ring 3: the step runs on and ends where the vCPU \
                 next stops (in the kernel, at a breakpoint, or on Ctrl-C)"
            );
        }
        let skip = self.slots.executes_at(rip).then_some(rip).filter(|_| !no_step);
        let state = &mut self.cpus[cpu];
        state.stepping_over = if mode == Mode::Continue { skip } else { None };
        let (addrs, dr7) = self.slots.registers(skip);
        let mut control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
        if !self.int3s.is_empty() {
            control |= KVM_GUESTDBG_USE_SW_BP;
        }
        if (mode == Mode::Step && !no_step) || skip.is_some() {
            control |= KVM_GUESTDBG_SINGLESTEP;
            if self.block_irq {
                control |= KVM_GUESTDBG_BLOCKIRQ;
            }
        }
        let mut debugreg = [0u64; 8];
        debugreg[..SLOTS].copy_from_slice(&addrs);
        debugreg[7] = dr7;
        let debug = kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg } };
        if state.armed != Some(debug) {
            fd.set_guest_debug(&debug)?;
            state.armed = Some(debug);
        }
        Ok(())
    }

    /// Turns guest debugging off on every vCPU (GDB detached or went away): the guest runs on
    /// as without it.
    pub fn release(&mut self) -> Result<(), kvm_ioctls::Error> {
        self.pause();
        self.int3s.clear(&self.mem);
        self.resume_clock();
        for cpu in 0..self.cpus.len() {
            self.fd(cpu).set_guest_debug(&kvm_guest_debug::default())?;
        }
        self.aps.release();
        Ok(())
    }

    /// Runs vCPU 0 (or waits for another vCPU, where vCPU 0 stays stopped) until something GDB
    /// must hear of; `None` when it only needs another look at the connection (a kick, or a VM
    /// exit lde handled).
    pub(super) fn run_once(&mut self) -> Result<Option<StopReason>, TargetFault> {
        if let Some(reason) = self.pending.take() {
            return Ok(Some(reason));
        }
        // Before the stop flag: a vCPU that ended the run reports it before the run stops.
        if let Some((cpu, stop)) = self.aps.take_stop() {
            return self.stopped(cpu, stop);
        }
        if self.stop.load(std::sync::atomic::Ordering::Acquire) {
            return Err(TargetFault::Stopping);
        }
        if self.cpus[0].mode.is_none() {
            return match self.aps.wait_stop(LOOK_AGAIN) {
                Some((cpu, stop)) => self.stopped(cpu, stop),
                None => Ok(None),
            };
        }
        let action = match self.vcpu.run() {
            Ok(VcpuExit::Debug(debug)) => {
                let (exception, pc, dr6) = (debug.exception, debug.pc, debug.dr6);
                return self.stopped(0, ApStop::Debug { exception, pc, dr6 });
            }
            Ok(exit) => handle_vmexit(exit, self.devices, self.counts),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => return Ok(None),
            Err(e) => return Err(TargetFault::Kvm(e)),
        };
        let Some(end) = vcpu::end_of(self.vcpu, action) else { return Ok(None) };
        self.pause();
        let reason = match end {
            VcpuEnd::Shutdown(code) => StopReason::Exited(code as u8),
            _ => StopReason::Terminated(Signal::SIGSEGV),
        };
        self.end = Some(end);
        Ok(Some(reason))
    }

    /// vCPU `cpu` stopped with `stop`: pauses the machine, and says what GDB must hear of it
    /// (or lets the machine run on where it is not GDB's business).
    fn stopped(&mut self, cpu: usize, stop: ApStop) -> Result<Option<StopReason>, TargetFault> {
        self.pause();
        let reason = match stop {
            ApStop::Debug { exception, pc, dr6 } => {
                log::debug!("gdb: debug exit on vCPU {cpu}: exception {exception} pc {pc:#x} dr6 {dr6:#x}");
                let reason = match exception {
                    BP_VECTOR => self.int3_exit(cpu, pc).map_err(TargetFault::Kvm)?,
                    _ => self.debug_exit(cpu, dr6),
                };
                if reason.is_none() {
                    self.start()?;
                }
                return Ok(reason);
            }
            // The vCPU's thread carries the run's end; this one only stopped.
            ApStop::Shutdown(code) => StopReason::Exited(code as u8),
            ApStop::Crashed => StopReason::Terminated(Signal::SIGSEGV),
        };
        self.end = Some(VcpuEnd::Stopped);
        Ok(Some(reason))
    }

    /// A KVM_EXIT_DEBUG for an `int3` (KVM_GUESTDBG_USE_SW_BP): lde's breakpoint at `pc`, or
    /// the guest's own `int3` (a program's, in ring 3), which goes back to the guest as the #BP
    /// it was (KVM left RIP at the `int3` and takes the instruction's length from the exit).
    fn int3_exit(&mut self, cpu: usize, pc: u64) -> Result<Option<StopReason>, kvm_ioctls::Error> {
        let ours = self.int3s.at(pc);
        let fd = fd_of(self.vcpu, &self.aps, cpu);
        let mut regs = fd.get_regs()?;
        if ours {
            // KVM reports RIP at the int3 (VMX and SVM alike); a host that left it after the
            // instruction would have GDB see the wrong pc.
            if regs.rip != pc {
                log::debug!("gdb: int3 exit with rip {:#x}: rewound to the breakpoint at {pc:#x}", regs.rip);
                regs.rip = pc;
                fd.set_regs(&regs)?;
            }
            return Ok(Some(StopReason::SwBreak(tid(cpu))));
        }
        log::debug!("gdb: the guest's own int3 at {pc:#x} on vCPU {cpu}: delivered to it as #BP");
        let mut events = fd.get_vcpu_events()?;
        events.exception.injected = 1;
        events.exception.nr = BP_VECTOR as u8;
        events.exception.has_error_code = 0;
        events.exception.error_code = 0;
        fd.set_vcpu_events(&events)?;
        Ok(None)
    }

    /// What a KVM_EXIT_DEBUG on vCPU `cpu` means to GDB.
    fn debug_exit(&mut self, cpu: usize, dr6: u64) -> Option<StopReason> {
        let hit = self.slots.hit(dr6);
        if let Some(over) = self.cpus[cpu].stepping_over.take() {
            // The step over a breakpoint is done: continue with every slot armed, unless the
            // instruction stepped over touched a watched address.
            if !matches!(hit, Some(Slot { what: Use::Watch { .. }, .. })) {
                log::debug!("gdb: vCPU {cpu} stepped over the breakpoint at {over:#x}");
                return None;
            }
        }
        let tid = tid(cpu);
        match hit {
            Some(Slot { what: Use::Execute { software: true }, .. }) => Some(StopReason::SwBreak(tid)),
            Some(Slot { what: Use::Execute { software: false }, .. }) => Some(StopReason::HwBreak(tid)),
            Some(Slot { addr, what: Use::Watch { kind, .. } }) => Some(StopReason::Watch { tid, kind, addr }),
            // A step done, or a #DB the slots do not explain: a SIGTRAP in the thread.
            None => Some(StopReason::SignalWithThread { tid, signal: Signal::SIGTRAP }),
        }
    }
}
