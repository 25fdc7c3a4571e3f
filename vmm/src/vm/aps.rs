//! The application processors of a run (`--cpus N`): vCPUs 1 to N−1, each on a thread of its
//! own (`vcpuN`) from the start. KVM holds each in its uninitialized state, inside `KVM_RUN`,
//! until the guest's INIT and SIPI start it; lde never sets their registers. When the run ends
//! they are stopped as the first vCPU is, and lde says which the guest never started.
//!
//! Each fd sits behind a lock that its thread holds while it runs: under GDB (`--gdb`) the
//! thread runs only while GDB lets the machine run, and GDB's stub on vCPU 0's thread reads and
//! writes the vCPU through the lock while it is parked (`crate::gdb::Aps`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use kvm_bindings::KVM_MP_STATE_UNINITIALIZED;
use kvm_ioctls::VcpuFd;
use vmm_sys_util::eventfd::EventFd;

use super::Error;
use crate::devices::Devices;
use crate::seccomp::Error as SeccompError;
use crate::vcpu::{self, VcpuEnd};
use crate::vmexit::VmExitCounts;

/// How a thread installs its seccomp filter once it runs.
pub(super) type Confine = Box<dyn FnOnce() -> Result<(), SeccompError> + Send>;

/// An application processor's fd, shared by its thread and (under GDB) the stub.
pub(super) type ApFd = Arc<Mutex<VcpuFd>>;

/// Starts a thread for each application processor: `devices` makes each its own view of the
/// devices, `shared` are the exit counts, the stop flag and the eventfd that wakes the event
/// loop, `confine` makes each its seccomp step; `gdb`, under GDB, is where they park.
pub(super) fn spawn_all(
    aps: &[ApFd],
    devices: &dyn Fn() -> Result<Devices, Error>,
    shared: (&Arc<VmExitCounts>, &Arc<AtomicBool>, &EventFd),
    confine: impl Fn() -> Confine,
    gdb: Option<&crate::gdb::Aps>,
) -> Result<Vec<JoinHandle<VcpuEnd>>, Error> {
    let (counts, stop, done) = shared;
    aps.iter()
        .enumerate()
        .map(|(i, vcpu_fd)| {
            ApThread {
                id: i + 1,
                vcpu_fd: vcpu_fd.clone(),
                gdb: gdb.cloned(),
                devices: devices()?,
                counts: counts.clone(),
                stop: stop.clone(),
                done: done.try_clone().map_err(|e| Error::Host("eventfd", e))?,
                confine: confine(),
            }
            .spawn()
        })
        .collect()
}

/// Takes each application processor's fd back from the threads that shared it, once they all
/// have ended.
pub(super) fn take_back(aps: Vec<ApFd>) -> Result<Vec<VcpuFd>, Error> {
    aps.into_iter()
        .map(|fd| {
            let fd = Arc::try_unwrap(fd)
                .map_err(|_| Error::Host("vCPU", std::io::Error::other("its fd is still shared")))?;
            Ok(fd.into_inner().unwrap_or_else(PoisonError::into_inner))
        })
        .collect()
}

/// What an application processor's thread takes with it.
struct ApThread {
    id: usize,
    vcpu_fd: ApFd,
    /// Under GDB: where the thread parks while GDB holds the machine.
    gdb: Option<crate::gdb::Aps>,
    devices: Devices,
    counts: Arc<VmExitCounts>,
    stop: Arc<AtomicBool>,
    /// Written when the vCPU ends, to wake the event loop (an AP's end ends the run too).
    done: EventFd,
    confine: Confine,
}

impl ApThread {
    fn spawn(self) -> Result<JoinHandle<VcpuEnd>, Error> {
        std::thread::Builder::new()
            .name(format!("vcpu{}", self.id))
            .spawn(move || {
                let ApThread { id, vcpu_fd, gdb, mut devices, counts, stop, done, confine } = self;
                let end = match (confine(), gdb) {
                    (Ok(()), Some(gdb)) => gdb.run(id, &mut devices, &stop, &counts),
                    (Ok(()), None) => {
                        let mut fd = vcpu_fd.lock().unwrap_or_else(PoisonError::into_inner);
                        vcpu::run(&mut fd, &mut devices, &stop, &counts, None)
                    }
                    (Err(e), _) => VcpuEnd::Confined(e),
                };
                let _ = done.write(1);
                end
            })
            .map_err(|e| Error::Host("vCPU thread", e))
    }
}

/// The run's end as the vCPUs give it: the first vCPU's, unless it was only stopped and an
/// application processor ended the run (a shutdown, a crash).
pub(super) fn deciding_end(first: (VcpuEnd, VcpuFd), aps: Vec<(VcpuEnd, VcpuFd)>) -> ((VcpuEnd, VcpuFd), Vec<u8>) {
    let never_started = aps
        .iter()
        .enumerate()
        .filter(|(_, (_, fd))| fd.get_mp_state().is_ok_and(|s| s.mp_state == KVM_MP_STATE_UNINITIALIZED))
        .map(|(i, _)| (i + 1) as u8)
        .collect();
    if !matches!(first.0, VcpuEnd::Stopped) {
        return (first, never_started);
    }
    let mut aps = aps;
    match aps.iter().position(|(end, _)| !matches!(end, VcpuEnd::Stopped)) {
        Some(i) => (aps.swap_remove(i), never_started),
        None => (first, never_started),
    }
}
