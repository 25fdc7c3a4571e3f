//! `lde run --gdb`: a GDB remote stub on KVM guest debugging (`KVM_SET_GUEST_DEBUG`), built on
//! the `gdbstub` crate with `gdbstub_arch`'s x86-64 registers, as uhyve and Cloud Hypervisor do.
//!
//! vCPU 0's thread serves GDB itself: it waits for GDB before the guest's first instruction,
//! then runs gdbstub's blocking event loop, in which the guest runs between GDB's commands
//! (`resume.rs`). While GDB is attached a per-thread timer kicks the thread out of `KVM_RUN`
//! 20 times a second so that it sees GDB's Ctrl-C even when the guest makes no exit.
//!
//! With several vCPUs (`--cpus N`) GDB sees one thread per vCPU (thread N+1 is vCPU N, `info
//! threads` says what each is doing) and the machine stops as a whole: when one vCPU stops for
//! GDB, or GDB interrupts, every vCPU is out of `KVM_RUN` before GDB hears of it (`aps.rs`).
//! A resume runs the vCPUs GDB's actions name; a vCPU GDB does not name continues, unless GDB
//! locks the scheduler (`set scheduler-locking on`), and then it stays stopped.
//!
//! Before GDB attaches lde measures what this KVM's guest debugging delivers (`measure.rs`: a
//! probe VM with a DR0 breakpoint, a DR0 watchpoint and an `int3`), and serves GDB's kinds with
//! that: `break` as an `int3` written into guest memory where KVM reports it (`int3.rs`, as on
//! hardware KVM), in a debug register on PVM (an `int3` in ring-0 code kills the VM there,
//! `KVM_EXIT_INTERNAL_ERROR`); `hbreak` and `watch` in DR0–DR3 (`debugregs.rs`: four at once, a
//! fifth is refused with a warning line). A kind this KVM does not stop at is refused with a
//! line that says so (PVM reports no data breakpoints; the nested SVM host under QEMU 7.2 TCG
//! stops at no breakpoint at all). Memory is read through the guest's current page tables
//! (`paging.rs`); time stopped is hidden from the guest where KVM lets lde move the TSC offset
//! (`clock.rs`).
//!
//! How a session ends: the guest's exit or crash ends the run as without GDB (GDB is told);
//! `detach` and a lost connection let the guest run on without the debugger (a lost connection
//! with a warning line); GDB's `kill` stops the guest (exit status [`code::GDB_KILLED`]).

mod aps;
mod breakpoints;
mod clock;
mod conn;
mod debugregs;
mod eventloop;
mod int3;
mod measure;
mod monitor;
mod paging;
mod registers;
mod resume;
mod ring3;
mod target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gdbstub::stub::{DisconnectReason, GdbStub};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::SIGRTMIN;

pub use aps::Aps;
pub use conn::{Addr, ListenError, Listener, DEFAULT_ADDR};
#[allow(unused_imports)] // named in the docs above
use lde_abi::exit_code as code;
pub use measure::{measure, Measured};

use crate::devices::Devices;
use crate::vcpu::{self, VcpuEnd};
use crate::vmexit::VmExitCounts;
use eventloop::EventLoop;
use target::{DebugHost, TargetFault, VcpuTarget};

/// What the vCPU thread needs to serve GDB.
pub struct Session<'a> {
    pub listener: &'a Listener,
    pub vcpu: &'a mut VcpuFd,
    /// The other vCPUs (`--cpus`), whose threads run them only while GDB lets them.
    pub aps: Aps,
    pub mem: GuestMemoryMmap,
    pub devices: &'a mut Devices,
    pub counts: &'a VmExitCounts,
    pub stop: Arc<AtomicBool>,
    /// KVM can keep interrupts off during a single step (`KVM_CAP_SET_GUEST_DEBUG2`).
    pub block_irq: bool,
    /// The host reports no single step or breakpoint in ring 3 (PVM).
    pub ring3_blind: bool,
    /// What this KVM's guest debugging delivered when lde probed it.
    pub measured: Measured,
}

/// Waits for GDB, confines the thread with `confine` once it is connected (accepting happens
/// before the filter), and runs the guest under GDB to its end.
pub fn serve(session: Session<'_>, confine: impl FnOnce() -> Result<(), crate::seccomp::Error>) -> VcpuEnd {
    let Session { listener, vcpu, aps, mem, devices, counts, stop, block_irq, ring3_blind, measured } = session;
    let conn = match listener.accept(&stop) {
        Ok(Some(conn)) => conn,
        Ok(None) => return VcpuEnd::Stopped,
        Err(e) => return VcpuEnd::GdbFailed(format!("cannot accept GDB's connection on {}: {e}", listener.addr)),
    };
    let kicker = match Kicker::start() {
        Ok(kicker) => kicker,
        Err(e) => return VcpuEnd::GdbFailed(format!("cannot start the vCPU's kick timer: {e}")),
    };
    // Probes the TSC-offset attribute (KVM_HAS_DEVICE_ATTR) before the filter forbids it.
    let host = DebugHost { block_irq, ring3_blind, measured };
    aps.register_thread(0);
    let mut target = VcpuTarget::new(vcpu, aps, mem, devices, counts, stop.clone(), host);
    if let Err(e) = confine() {
        return VcpuEnd::Confined(e);
    }
    eprintln!("lde: gdb: GDB attached; {}", target.clock.describe());
    eprintln!("lde: gdb: {}", measured.serving(ring3_blind));
    let result = GdbStub::new(conn).run_blocking::<EventLoop<'_>>(&mut target);
    drop(kicker);
    if let Some(end) = target.end.take() {
        return end;
    }
    if stop.load(Ordering::Acquire) {
        return VcpuEnd::Stopped;
    }
    match result {
        Ok(DisconnectReason::Kill) => {
            eprintln!("lde: gdb: GDB killed the guest");
            return VcpuEnd::GdbKilled;
        }
        Ok(DisconnectReason::Disconnect) => eprintln!("lde: gdb: GDB detached; the guest runs on"),
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => {}
        Err(e) => match e.into_target_error() {
            Some(TargetFault::Kvm(e)) => return VcpuEnd::Error(e),
            Some(TargetFault::Stopping) => return VcpuEnd::Stopped,
            None => eprintln!("lde: warning: the connection to GDB was lost; the guest runs on without it"),
        },
    }
    if let Err(e) = target.release() {
        return VcpuEnd::Error(e);
    }
    let VcpuTarget { vcpu, devices, counts, .. } = target;
    vcpu::run(vcpu, devices, &stop, counts, None)
}

/// A POSIX timer that sends the vCPU thread the kick signal every 50 ms (the signal's handler
/// does nothing: it only makes `KVM_RUN` return with EINTR).
struct Kicker(libc::timer_t);

impl Kicker {
    fn start() -> std::io::Result<Kicker> {
        // SAFETY: sigevent is plain data; all-zero is a valid start.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = SIGRTMIN();
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a sigevent and a timer_t for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let period = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        let spec = libc::itimerspec { it_interval: period, it_value: period };
        // SAFETY: `timer` was just created; `spec` is a valid itimerspec.
        if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: deleting the timer created above.
            unsafe { libc::timer_delete(timer) };
            return Err(e);
        }
        Ok(Kicker(timer))
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `start` and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}
