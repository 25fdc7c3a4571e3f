//! The machine as gdbstub's target: one GDB thread per vCPU (thread N+1 is vCPU N), registers
//! and memory as each vCPU sees them (its own CR3), breakpoints (`int3` in guest memory or
//! DR0–DR3, as this host allows) and watchpoints in DR0–DR3 on every vCPU, and GDB's resume
//! actions per thread. Running the machine between GDB's commands is `resume.rs`.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, MutexGuard};

use gdbstub::common::{Signal, Tid};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use kvm_bindings::kvm_guest_debug;
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestMemoryMmap};

use super::aps::Aps;
use super::clock::StopClock;
use super::debugregs::Slots;
use super::int3::Int3s;
use super::measure::Measured;
use super::paging::Paging;
use crate::devices::Devices;
use crate::vcpu::VcpuEnd;
use crate::vmexit::VmExitCounts;

/// What GDB is told when the machine stops.
pub type StopReason = MultiThreadStopReason<u64>;

/// Why the target cannot go on (gdbstub ends the session with it).
#[derive(Debug)]
pub enum TargetFault {
    /// lde is stopping (Ctrl-C, a signal, --timeout).
    Stopping,
    /// A KVM ioctl failed.
    Kvm(kvm_ioctls::Error),
}

/// How a vCPU is to run when GDB lets the machine run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
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

/// One vCPU's part of the debugging state.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CpuDebug {
    /// How it runs at the next resume; `None`: it stays stopped (GDB's scheduler locking).
    pub mode: Option<Mode>,
    /// The debug control KVM was last given, to set it again only when it changes.
    pub armed: Option<kvm_guest_debug>,
    /// Stepping over the execute breakpoint at this address before continuing.
    pub stepping_over: Option<u64>,
}

/// The machine's vCPUs, its memory and devices, as GDB sees them.
pub struct VcpuTarget<'a> {
    /// vCPU 0, run on this thread.
    pub vcpu: &'a mut VcpuFd,
    /// vCPUs 1 to N−1 on their own threads (none with one vCPU).
    pub aps: Aps,
    pub mem: GuestMemoryMmap,
    pub devices: &'a mut Devices,
    pub counts: &'a VmExitCounts,
    pub stop: Arc<AtomicBool>,
    /// How the guest ended while GDB watched, if it did (`Stopped` where a vCPU other than
    /// vCPU 0 ended it: its thread carries the end).
    pub end: Option<VcpuEnd>,
    pub clock: StopClock,
    /// KVM can hold off interrupts during a single step (KVM_GUESTDBG_BLOCKIRQ).
    pub block_irq: bool,
    /// The host reports no single step and no breakpoint in ring 3 (PVM): lde carries out a
    /// stepped `iretq` or `sysretq` to ring 3 itself (see `ring3.rs`).
    pub ring3_blind: bool,
    /// What this KVM's guest debugging delivered when lde probed it (`measure.rs`).
    pub(super) measured: Measured,
    pub(super) slots: Slots,
    /// Software breakpoints written into guest memory (hosts whose KVM reports `int3`).
    pub(super) int3s: Int3s,
    /// Per vCPU, vCPU 0 first.
    pub(super) cpus: Vec<CpuDebug>,
    /// GDB's scheduler locking: vCPUs GDB did not name in its resume stay stopped.
    pub(super) locked: bool,
    /// A stop found while resuming (a stepped return to ring 3 lde carried out), told at the next look.
    pub(super) pending: Option<StopReason>,
}

/// A vCPU's fd: vCPU 0's, or an application processor's behind its lock (it is parked).
pub(super) enum FdRef<'s> {
    Own(&'s mut VcpuFd),
    Ap(MutexGuard<'s, VcpuFd>),
}

impl Deref for FdRef<'_> {
    type Target = VcpuFd;
    fn deref(&self) -> &VcpuFd {
        match self {
            FdRef::Own(fd) => fd,
            FdRef::Ap(fd) => fd,
        }
    }
}

impl DerefMut for FdRef<'_> {
    fn deref_mut(&mut self) -> &mut VcpuFd {
        match self {
            FdRef::Own(fd) => fd,
            FdRef::Ap(fd) => fd,
        }
    }
}

/// vCPU `cpu`'s fd, borrowing only the fields that hold them (the caller keeps the others).
pub(super) fn fd_of<'s>(vcpu: &'s mut VcpuFd, aps: &'s Aps, cpu: usize) -> FdRef<'s> {
    match cpu {
        0 => FdRef::Own(vcpu),
        _ => FdRef::Ap(aps.fd(cpu)),
    }
}

/// GDB's thread for vCPU `cpu`.
pub(super) fn tid(cpu: usize) -> Tid {
    Tid::new(cpu + 1).expect("cpu + 1 is not zero")
}

impl<'a> VcpuTarget<'a> {
    pub fn new(
        vcpu: &'a mut VcpuFd,
        aps: Aps,
        mem: GuestMemoryMmap,
        devices: &'a mut Devices,
        counts: &'a VmExitCounts,
        stop: Arc<AtomicBool>,
        host: DebugHost,
    ) -> Self {
        let DebugHost { block_irq, ring3_blind, measured } = host;
        let clock = StopClock::new(vcpu);
        let cpus = vec![CpuDebug::default(); aps.count() + 1];
        VcpuTarget {
            vcpu,
            aps,
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
            cpus,
            locked: false,
            pending: None,
        }
    }

    /// The vCPU of GDB's thread `tid`, if there is one.
    pub(super) fn cpu(&self, tid: Tid) -> Result<usize, TargetError<TargetFault>> {
        let cpu = tid.get() - 1;
        match cpu < self.cpus.len() {
            true => Ok(cpu),
            false => Err(TargetError::NonFatal),
        }
    }

    pub(super) fn fd(&mut self, cpu: usize) -> FdRef<'_> {
        fd_of(self.vcpu, &self.aps, cpu)
    }

    /// How vCPU `cpu` translates addresses now.
    pub(super) fn paging(&mut self, cpu: usize) -> Result<Paging, kvm_ioctls::Error> {
        let s = self.fd(cpu).get_sregs()?;
        Ok(Paging { cr0: s.cr0, cr3: s.cr3, efer: s.efer })
    }

    /// Copies between `data` and guest memory at `start` (virtual, as vCPU `cpu` sees it), page
    /// by page; how many bytes could be reached.
    fn access(
        &mut self,
        cpu: usize,
        start: u64,
        len: usize,
        mut copy: impl FnMut(&GuestMemoryMmap, vm_memory::GuestAddress, std::ops::Range<usize>) -> bool,
    ) -> TargetResult<usize, Self> {
        let paging = self.paging(cpu).map_err(|_| TargetError::NonFatal)?;
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

    /// Reads memory as vCPU `cpu` sees it, lde's `int3`s shown as the bytes they replaced.
    pub(super) fn read_as(&mut self, cpu: usize, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let len = data.len();
        let int3s = std::mem::take(&mut self.int3s);
        let read = self.access(cpu, start, len, |mem, phys, range| {
            let chunk = &mut data[range];
            let ok = mem.read_slice(chunk, phys).is_ok();
            int3s.hide(phys, chunk);
            ok
        });
        self.int3s = int3s;
        read
    }
}

impl Target for VcpuTarget<'_> {
    type Arch = X86_64_SSE;
    type Error = TargetFault;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
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

impl MultiThreadBase for VcpuTarget<'_> {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let cpu = self.cpu(tid)?;
        super::registers::read(&self.fd(cpu), regs).map_err(|_| TargetError::NonFatal)
    }

    /// Writes the general registers, RIP and RFLAGS, and the x87/SSE state; segment selectors
    /// are not written (a selector alone would not load its descriptor).
    fn write_registers(&mut self, regs: &X86_64CoreRegs, tid: Tid) -> TargetResult<(), Self> {
        let cpu = self.cpu(tid)?;
        super::registers::write(&self.fd(cpu), regs).map_err(|_| TargetError::NonFatal)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let cpu = self.cpu(tid)?;
        self.read_as(cpu, start, data)
    }

    /// Writes memory as the thread's vCPU sees it; a byte written over one of lde's `int3`s is
    /// kept under it.
    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let cpu = self.cpu(tid)?;
        let mut int3s = std::mem::take(&mut self.int3s);
        let written = self.access(cpu, start, data.len(), |mem, phys, range| {
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

    /// Every vCPU, started by the guest or not, is a thread.
    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        (0..self.cpus.len()).for_each(|cpu| thread_is_active(tid(cpu)));
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl ThreadExtraInfo for VcpuTarget<'_> {
    /// What `info threads` shows beside a thread: its vCPU and what KVM says it is doing.
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let cpu = tid.get() - 1;
        let state = match cpu {
            0 => self.vcpu.get_mp_state(),
            c if c < self.cpus.len() => self.aps.fd(c).get_mp_state(),
            _ => return Ok(0),
        };
        let doing = match state.map(|s| s.mp_state) {
            Ok(kvm_bindings::KVM_MP_STATE_RUNNABLE) => "runnable",
            Ok(kvm_bindings::KVM_MP_STATE_HALTED) => "halted (hlt)",
            Ok(kvm_bindings::KVM_MP_STATE_UNINITIALIZED) => "not started: waiting for INIT",
            Ok(kvm_bindings::KVM_MP_STATE_INIT_RECEIVED) => "INIT received: waiting for SIPI",
            Ok(kvm_bindings::KVM_MP_STATE_SIPI_RECEIVED) => "SIPI received",
            Ok(_) => "in another state",
            Err(_) => "state unknown",
        };
        let text = format!("vCPU {cpu}, {doing}");
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

impl MultiThreadResume for VcpuTarget<'_> {
    /// Lets the vCPUs run as GDB's actions say (`resume.rs`).
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.start()
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.cpus.iter_mut().for_each(|c| c.mode = None);
        self.locked = false;
        Ok(())
    }

    /// Continues the thread's vCPU; a signal GDB would pass to the target is dropped (a VM has
    /// no signals).
    fn set_resume_action_continue(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        if let Ok(cpu) = self.cpu(tid) {
            self.cpus[cpu].mode = Some(Mode::Continue);
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for VcpuTarget<'_> {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        if let Ok(cpu) = self.cpu(tid) {
            self.cpus[cpu].mode = Some(Mode::Step);
        }
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VcpuTarget<'_> {
    /// `set scheduler-locking on` (or `step` while stepping): the vCPUs GDB did not name stay
    /// stopped.
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}
