//! The application processors under GDB (`lde run --gdb --cpus N`): all-stop, as GDB expects
//! of a machine.
//!
//! The stub runs on vCPU 0's thread and serves GDB there (`mod.rs`). Each other vCPU keeps its
//! own thread, but under GDB that thread runs `KVM_RUN` only while the stub lets it: it parks
//! (out of `KVM_RUN`, its fd's lock released) whenever the stub pauses the machine, and the stub
//! then reads and writes that vCPU's registers and debug control through the same lock.
//!
//! A vCPU that stops for GDB (a breakpoint, a step, a watchpoint) or ends the run reports it
//! here, parks, and kicks vCPU 0's thread out of `KVM_RUN`; the stub then pauses every other
//! vCPU before it answers GDB. So while GDB looks, no vCPU runs, and each resume lets exactly
//! the vCPUs GDB asked for run again.
//!
//! Parking is "kick until parked": a kick that lands just before a thread enters `KVM_RUN` is
//! lost, so the stub kicks again every millisecond until the thread says it is parked.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::SIGRTMIN;

use crate::devices::Devices;
use crate::vcpu::{self, VcpuEnd};
use crate::vmexit::{handle_vmexit, VmExitCounts};

/// How long a parked thread waits before it looks at the run's stop flag again.
const PARKED_LOOK: Duration = Duration::from_millis(50);
/// How long the stub waits for a kicked thread to park before it kicks again.
const KICK_AGAIN: Duration = Duration::from_millis(1);

/// What a vCPU reports to the stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApStop {
    /// `KVM_EXIT_DEBUG`: the exception (1 #DB, 3 #BP), RIP KVM reported, DR6.
    Debug { exception: u32, pc: u64, dr6: u64 },
    /// The guest shut down through this vCPU with this code.
    Shutdown(u32),
    /// The guest crashed on this vCPU (or a KVM call failed): the run ends.
    Crashed,
}

/// The application processors as the stub and their threads share them.
#[derive(Clone)]
pub struct Aps(Arc<Shared>);

struct Shared {
    /// vCPU i + 1's fd: held by its thread inside `KVM_RUN`, by the stub while it is parked.
    vcpus: Vec<Arc<Mutex<VcpuFd>>>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The stub lets AP i run.
    run: Vec<bool>,
    /// AP i is out of `KVM_RUN` and waits (or its thread ended).
    parked: Vec<bool>,
    /// The threads, to kick out of `KVM_RUN` (`pthread_kill` with the kick signal); vCPU 0's
    /// first.
    threads: Vec<Option<libc::pthread_t>>,
    /// What the vCPUs reported since the stub last looked, in order (vCPU number, what).
    stops: VecDeque<(usize, ApStop)>,
    /// GDB is gone: the vCPUs run on without it.
    released: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked holding the lock ends the run anyway; its data stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn kick(thread: libc::pthread_t) {
    // SAFETY: `thread` is a live thread of this process: threads are recorded by themselves and
    // the run joins them only after the stub and the other vCPU threads have ended.
    unsafe { libc::pthread_kill(thread, SIGRTMIN()) };
}

impl Aps {
    /// The application processors `vcpus` (vCPUs 1 to N−1), all parked until the first resume.
    pub fn new(vcpus: Vec<Arc<Mutex<VcpuFd>>>) -> Self {
        let n = vcpus.len();
        let state = State {
            run: vec![false; n],
            // A thread that has not parked yet has not run either: it runs only from `park`.
            parked: vec![true; n],
            threads: vec![None; n + 1],
            stops: VecDeque::new(),
            released: false,
        };
        Aps(Arc::new(Shared { vcpus, state: Mutex::new(state), changed: Condvar::new() }))
    }

    /// How many application processors there are.
    pub fn count(&self) -> usize {
        self.0.vcpus.len()
    }

    /// vCPU `cpu`'s fd (1..=len), once its thread has parked.
    pub fn fd(&self, cpu: usize) -> MutexGuard<'_, VcpuFd> {
        locked(&self.0.vcpus[cpu - 1])
    }

    /// Records the calling thread as vCPU `cpu`'s (to be kicked out of `KVM_RUN`).
    pub fn register_thread(&self, cpu: usize) {
        // SAFETY: pthread_self has no preconditions.
        locked(&self.0.state).threads[cpu] = Some(unsafe { libc::pthread_self() });
    }

    /// Lets the vCPUs in `run` (AP i at index i) run; the others stay parked.
    pub fn resume(&self, run: impl Iterator<Item = bool>) {
        let mut state = locked(&self.0.state);
        for (slot, go) in state.run.iter_mut().zip(run) {
            *slot = go;
        }
        self.0.changed.notify_all();
    }

    /// Stops every application processor and waits until each has parked.
    pub fn pause_all(&self) {
        let mut state = locked(&self.0.state);
        state.run.iter_mut().for_each(|r| *r = false);
        while let Some(i) = state.parked.iter().position(|p| !p) {
            if let Some(thread) = state.threads[i + 1] {
                kick(thread);
            }
            state = self.0.changed.wait_timeout(state, KICK_AGAIN).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The oldest stop reported and not yet taken.
    pub fn take_stop(&self) -> Option<(usize, ApStop)> {
        locked(&self.0.state).stops.pop_front()
    }

    /// Waits up to `timeout` for a vCPU to report a stop (vCPU 0 does not run).
    pub fn wait_stop(&self, timeout: Duration) -> Option<(usize, ApStop)> {
        let mut state = locked(&self.0.state);
        if state.stops.is_empty() {
            state = self.0.changed.wait_timeout(state, timeout).unwrap_or_else(PoisonError::into_inner).0;
        }
        state.stops.pop_front()
    }

    /// GDB is gone: every vCPU runs on without it.
    pub fn release(&self) {
        locked(&self.0.state).released = true;
        self.0.changed.notify_all();
    }

    /// Reports `stop` for vCPU `cpu`, which parks, and kicks vCPU 0's thread to the stub.
    fn report(&self, cpu: usize, stop: ApStop) {
        let mut state = locked(&self.0.state);
        state.stops.push_back((cpu, stop));
        state.run[cpu - 1] = false;
        if let Some(stub) = state.threads[0] {
            kick(stub);
        }
        self.0.changed.notify_all();
    }

    /// Parks vCPU `cpu` until the stub lets it run (true), GDB is gone (false), or the run
    /// stops (`None`).
    fn park(&self, cpu: usize, stop: &AtomicBool) -> Option<bool> {
        let mut state = locked(&self.0.state);
        state.parked[cpu - 1] = true;
        self.0.changed.notify_all();
        let attached = loop {
            if stop.load(Ordering::Acquire) {
                return None;
            }
            if state.released {
                break false;
            }
            if state.run[cpu - 1] {
                break true;
            }
            state = self.0.changed.wait_timeout(state, PARKED_LOOK).unwrap_or_else(PoisonError::into_inner).0;
        };
        state.parked[cpu - 1] = false;
        Some(attached)
    }

    /// Marks vCPU `cpu`'s thread as gone for good (the stub never waits for it to park).
    fn gone(&self, cpu: usize) {
        let mut state = locked(&self.0.state);
        state.parked[cpu - 1] = true;
        state.threads[cpu] = None;
        self.0.changed.notify_all();
    }

    /// Runs application processor `cpu` under GDB to the end of the run: only while the stub
    /// lets it, reporting what GDB must hear of, and freely once GDB is gone.
    pub fn run(&self, cpu: usize, devices: &mut Devices, stop: &AtomicBool, counts: &VmExitCounts) -> VcpuEnd {
        self.register_thread(cpu);
        let end = self.run_parked(cpu, devices, stop, counts);
        self.gone(cpu);
        end
    }

    fn run_parked(&self, cpu: usize, devices: &mut Devices, stop: &AtomicBool, counts: &VmExitCounts) -> VcpuEnd {
        loop {
            match self.park(cpu, stop) {
                None => return VcpuEnd::Stopped,
                Some(false) => return vcpu::run(&mut self.fd(cpu), devices, stop, counts, None),
                Some(true) => {}
            }
            let mut fd = self.fd(cpu);
            let action = match fd.run() {
                Ok(VcpuExit::Debug(debug)) => {
                    let (exception, pc, dr6) = (debug.exception, debug.pc, debug.dr6);
                    self.report(cpu, ApStop::Debug { exception, pc, dr6 });
                    continue;
                }
                Ok(exit) => handle_vmexit(exit, devices, counts),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => {
                    self.report(cpu, ApStop::Crashed);
                    return VcpuEnd::Error(e);
                }
            };
            if let Some(end) = vcpu::end_of(&mut fd, action) {
                self.report(
                    cpu,
                    if let VcpuEnd::Shutdown(code) = end { ApStop::Shutdown(code) } else { ApStop::Crashed },
                );
                return end;
            }
        }
    }
}
