//! Running a built [`Vm`]: the vCPU on its own thread, and on another an event loop
//! (`event_loop.rs`) that forwards stdin, polls the stats page, serves the API socket, and stops
//! the run on the vCPU's end, the timeout, a signal (read from a signalfd) or lde's output
//! closed. Each of the two threads confines itself with its seccomp filter before it starts; the
//! calling thread builds, starts them, waits, cleans up and reads the run's report.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuFd, VmFd};
use lde_abi::stats::StatsPage;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use super::aps;
use super::disks::{self, Disk, QueueServer};
use super::event_loop::{self, Control, StopReason};
use super::nmi::NmiSender;
use super::outcome::who_held_the_cpu;
use super::{Error, Outcome, RunReport, Vm};
use crate::devices::virtio::BlockDevice;
use crate::devices::{ConsolePort, Devices, InputStatus, SerialDevice, SerialInput, ShutdownPort};
use crate::host::{HostInfo, KvmKind};
use crate::observe::kvm_stats::KvmStats;
use crate::observe::monitor::{ApiServer, Shared};
use crate::observe::recorder::Recorder;
use crate::seccomp::Thread;
use crate::vcpu::{self, VcpuEnd, VmExitHook};
use crate::vmexit::VmExitCounts;

/// A thread's seccomp filter.
type Filter = Vec<seccompiler::BpfProgram>;

impl Vm {
    /// Runs the vCPU on its own thread and the event loop on another until the guest ends, the
    /// timeout expires, a signal arrives or lde's output is closed.
    pub fn run(self) -> Result<RunReport, Error> {
        self.run_with(None)
    }

    /// [`Vm::run`] under GDB: the vCPU thread waits for GDB on `gdb` before the guest's first
    /// instruction and serves it (see [`crate::gdb`]).
    pub fn debug(self, gdb: crate::gdb::Listener) -> Result<RunReport, Error> {
        if self._vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG)) <= 0 {
            return Err(Error::KvmCapability("guest debugging (KVM_CAP_SET_GUEST_DEBUG), which --gdb needs"));
        }
        // Measured before the vCPU thread starts (it needs a VM of its own, which no seccomp
        // filter allows later).
        let measured = crate::gdb::measure().unwrap_or_else(|e| {
            eprintln!(
                "lde: warning: gdb: cannot measure this KVM's guest debugging ({e}); breakpoints are served as \
                 the manuals describe them"
            );
            crate::gdb::Measured::ARCHITECTURAL
        });
        self.run_with(Some((gdb, measured)))
    }

    /// Starts the run's threads, waits for them to end, and reads what they leave behind.
    fn run_with(self, gdb: Option<(crate::gdb::Listener, crate::gdb::Measured)>) -> Result<RunReport, Error> {
        register_signal_handler(SIGRTMIN(), kick_handler)
            .map_err(|e| Error::Host("vCPU kick signal", io::Error::from_raw_os_error(e.errno())))?;
        // Keystrokes reach the guest one at a time. Restored when this guard drops, before the
        // run returns; the stop signals stay blocked until the process ends (signals.rs).
        let _raw = self.input.and_then(crate::terminal::RawMode::enable);
        let (running, held) = self.start(gdb)?;
        let ended = running.join(held.started)?;
        held.report(ended)
    }

    /// Starts the vCPU thread, the NMI sender (under its test hook) and the event-loop thread;
    /// returns them, and what the calling thread holds meanwhile.
    fn start(self, gdb: Option<(crate::gdb::Listener, crate::gdb::Measured)>) -> Result<(Running, Held), Error> {
        let Vm {
            vcpu_fd,
            _vm,
            send_nmis,
            _mem,
            serial,
            api,
            shared,
            observer,
            mut exit_hook,
            kvm_stats,
            exits,
            tsc_khz,
            timeout,
            input,
            started,
            host,
            signals,
            filters,
            seccomp_check,
            disks,
            aps,
        } = self;
        let (vcpu_filter, events_filter) = match filters {
            Some((_, events)) if gdb.is_some() => (Some(crate::seccomp::filter(Thread::GdbVcpu)?), Some(events)),
            Some((vcpu, events)) => (Some(vcpu), Some(events)),
            None => (None, None),
        };
        if let (Some(hook), Some(stats)) = (exit_hook.as_deref_mut(), &kvm_stats) {
            hook.attach_kvm_stats(stats.clone());
            let others = aps.iter().filter_map(|ap| crate::observe::kvm_stats::KvmStats::open(ap).map(Arc::new));
            hook.attach_other_kvm_stats(others.collect());
        }
        let input_status = InputStatus::default();
        let stop = Arc::new(AtomicBool::new(false));
        let vcpu_done = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("eventfd", e))?;
        // The output-closed eventfd is made on first use: here, before the vCPU thread confines
        // itself, and not by that thread when its first console write finds the reader gone
        // (eventfd2 is not on its seccomp allow-list; a loaded host let the guest print before
        // the event loop had asked for the fd).
        let _ = crate::stdio::closed_event();
        let devices = || -> Result<Devices, Error> {
            Ok(Devices {
                serial: serial.clone(),
                shutdown_port: ShutdownPort,
                input_status: input_status.clone(),
                console: ConsolePort::new(_mem.clone()),
                disks: disks.iter().map(Disk::port).collect::<Result<_, _>>()?,
            })
        };
        let ap_fds: Vec<aps::ApFd> = aps.into_iter().map(|fd| Arc::new(Mutex::new(fd))).collect();
        let gdb_aps = gdb.is_some().then(|| crate::gdb::Aps::new(ap_fds.clone()));
        let threads = (&exits, &stop, &vcpu_done);
        let ap_threads = aps::spawn_all(&ap_fds, &devices, threads, ap_confine(&vcpu_filter), gdb_aps.as_ref())?;
        let vcpu = VcpuThread {
            vcpu_fd,
            devices: devices()?,
            counts: exits.clone(),
            stop: stop.clone(),
            done: vcpu_done.try_clone().map_err(|e| Error::Host("eventfd", e))?,
            exit_hook,
            filter: vcpu_filter,
            check: seccomp_check == Some(Thread::Vcpu),
            gdb: gdb.zip(gdb_aps).map(|(gdb, aps)| GdbSession::new(gdb, aps, &_mem, &_vm, &host)),
        }
        .spawn()?;
        let nmis = match send_nmis {
            true => Some(NmiSender::start(_vm.clone()).map_err(|e| Error::Host("NMI thread", e))?),
            false => None,
        };
        let control = Control::new(signals, vcpu_done, timeout, started)?;
        let api = api.map(|api| Arc::new(Mutex::new(api)));
        let serial_input = input.map(|fd| SerialInput::new(serial.clone(), fd, input_status.clone()));
        let mut subscribers = event_loop::subscribers(serial_input, shared.as_ref(), observer, api.clone())?;
        for disk in &disks {
            subscribers.push(Arc::new(Mutex::new(QueueServer::new(disk)?)));
        }
        let disks = disks.into_iter().map(|d| d.device).collect();
        let check_events = seccomp_check == Some(Thread::EventLoop);
        let events = event_loop::spawn(control, subscribers, move || confine(events_filter.as_ref(), check_events))?;
        let held = Held { _vm, _mem, serial, shared, kvm_stats, exits, tsc_khz, started, host, disks };
        Ok((Running { vcpu, aps: ap_threads, ap_fds, events, nmis, stop, api }, held))
    }
}

/// What the vCPU thread takes with it.
struct VcpuThread {
    vcpu_fd: VcpuFd,
    devices: Devices,
    counts: Arc<VmExitCounts>,
    /// Set by the calling thread to end the run.
    stop: Arc<AtomicBool>,
    /// Written when the vCPU ends, to wake the event loop.
    done: EventFd,
    exit_hook: Option<Box<dyn VmExitHook>>,
    filter: Option<Filter>,
    /// Whether to run the `--seccomp-check` test hook once confined.
    check: bool,
    gdb: Option<GdbSession>,
}

/// What the vCPU thread needs to serve GDB (`lde run --gdb`).
struct GdbSession {
    listener: crate::gdb::Listener,
    /// The other vCPUs, which run only while GDB lets them.
    aps: crate::gdb::Aps,
    measured: crate::gdb::Measured,
    memory: GuestMemoryMmap,
    block_irq: bool,
    ring3_blind: bool,
}

impl GdbSession {
    fn new(
        gdb: (crate::gdb::Listener, crate::gdb::Measured),
        aps: crate::gdb::Aps,
        mem: &GuestMemoryMmap,
        vm: &VmFd,
        host: &HostInfo,
    ) -> Self {
        let (listener, measured) = gdb;
        GdbSession {
            listener,
            aps,
            measured,
            memory: mem.clone(),
            block_irq: block_irq_in_steps(vm),
            ring3_blind: host.kvm == KvmKind::Pvm,
        }
    }
}

impl VcpuThread {
    /// Starts the thread `vcpu0`, which returns how the vCPU ended, and its fd.
    fn spawn(self) -> Result<JoinHandle<(VcpuEnd, VcpuFd)>, Error> {
        std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(move || self.run())
            .map_err(|e| Error::Host("vCPU thread", e))
    }

    /// Confines the thread and runs the vCPU to its end, under GDB if asked; then wakes the
    /// event loop.
    fn run(self) -> (VcpuEnd, VcpuFd) {
        let VcpuThread { mut vcpu_fd, mut devices, counts, stop, done, mut exit_hook, filter, check, gdb } = self;
        let end = match gdb {
            Some(gdb) => {
                let session = crate::gdb::Session {
                    listener: &gdb.listener,
                    vcpu: &mut vcpu_fd,
                    aps: gdb.aps.clone(),
                    mem: gdb.memory.clone(),
                    devices: &mut devices,
                    counts: &counts,
                    stop: stop.clone(),
                    block_irq: gdb.block_irq,
                    ring3_blind: gdb.ring3_blind,
                    measured: gdb.measured,
                };
                crate::gdb::serve(session, || confine(filter.as_ref(), check))
            }
            None => match confine(filter.as_ref(), check) {
                Ok(()) => {
                    let hook = exit_hook.as_deref_mut().map(|h| h as &mut dyn VmExitHook);
                    vcpu::run(&mut vcpu_fd, &mut devices, &stop, &counts, hook)
                }
                Err(e) => VcpuEnd::Confined(e),
            },
        };
        let _ = done.write(1);
        (end, vcpu_fd)
    }
}

/// The run's threads while it goes on.
struct Running {
    vcpu: JoinHandle<(VcpuEnd, VcpuFd)>,
    /// The application processors' threads (`--cpus`), and their fds.
    aps: Vec<JoinHandle<VcpuEnd>>,
    ap_fds: Vec<aps::ApFd>,
    events: JoinHandle<Result<StopReason, Error>>,
    /// The sender of the `lde.test=host-nmi` hook.
    nmis: Option<NmiSender>,
    stop: Arc<AtomicBool>,
    /// The server stays referenced here, so that it is dropped (and its socket removed) on the
    /// calling thread, whose system calls are not filtered.
    api: Option<Arc<Mutex<ApiServer>>>,
}

/// How the run's threads ended.
struct Ended {
    vcpu_end: VcpuEnd,
    vcpu_fd: VcpuFd,
    /// The application processors the guest never started (their ids).
    never_started: Vec<u8>,
    stop: StopReason,
    /// From process start to the end of the run.
    ended_after: Duration,
}

impl Running {
    /// Waits for the event loop to stop the run, then stops and joins the vCPU thread and the
    /// NMI sender, and removes the API socket.
    fn join(self, started: Instant) -> Result<Ended, Error> {
        let Running { vcpu, aps, ap_fds, events, nmis, stop, api } = self;
        let host_stop = events.join().unwrap_or(Err(Error::Host("event-loop thread", io::Error::other("it panicked"))));
        stop.store(true, Ordering::Release);
        kick_until_ended(&vcpu);
        aps.iter().for_each(kick_until_ended);
        // A vCPU thread that panicked (its message is already on stderr) is this run's error,
        // reported once; the NMI sender is stopped and the API socket removed all the same.
        let joined = vcpu.join();
        let sent_nmis = nmis.map(NmiSender::stop);
        let ended_after = started.elapsed();
        drop(api);
        let first = joined.map_err(|_| Error::Host("vCPU thread", io::Error::other("it panicked")))?;
        let ap_ends = aps
            .into_iter()
            .map(|t| t.join().map_err(|_| Error::Host("vCPU thread", io::Error::other("it panicked"))))
            .collect::<Result<Vec<_>, _>>()?;
        let aps = ap_ends.into_iter().zip(aps::take_back(ap_fds)?).collect();
        let ((vcpu_end, vcpu_fd), never_started) = aps::deciding_end(first, aps);
        if let Some(sent) = sent_nmis {
            let sent = sent.map_err(|e| Error::Host("KVM_SIGNAL_MSI (NMI)", e))?;
            log::info!("test hook: sent the guest {sent} NMIs");
        }
        Ok(Ended { vcpu_end, vcpu_fd, never_started, stop: host_stop?, ended_after })
    }
}

/// What the calling thread holds while the run's threads run, and reads once they end.
struct Held {
    // Field order is drop order: the VM goes before the memory it maps (and after the vCPU,
    // which `Held::report` drops first).
    _vm: Arc<VmFd>,
    _mem: GuestMemoryMmap,
    serial: Arc<Mutex<SerialDevice>>,
    shared: Option<Shared>,
    kvm_stats: Option<Arc<KvmStats>>,
    exits: Arc<VmExitCounts>,
    tsc_khz: Option<u32>,
    started: Instant,
    host: HostInfo,
    disks: Vec<Arc<Mutex<BlockDevice>>>,
}

impl Held {
    /// The report of the run that `ended`.
    fn report(self, ended: Ended) -> Result<RunReport, Error> {
        let Ended { vcpu_end, vcpu_fd, never_started, stop, ended_after } = ended;
        // The vCPU has stopped: no request is in flight. Flushed however the run ended.
        let disks = disks::finish(&self.disks)?;
        let recorder = stopped_recorder(self.shared);
        let stats = recorder.as_ref().and_then(|r| r.last.as_deref());
        let outcome = outcome(stop, vcpu_end, &vcpu_fd, stats)?;
        let console = crate::devices::lock_serial(&self.serial);
        let banner_after = console.writer().banner_at().map(|t| t.duration_since(self.started));
        Ok(RunReport {
            outcome,
            host: self.host,
            tsc_khz: self.tsc_khz,
            banner_after,
            ended_after,
            exits: self.exits.totals(),
            kvm_stats: self.kvm_stats.map(|k| k.read()),
            serial_bytes: console.writer().bytes(),
            recorder,
            disks,
            never_started,
        })
    }
}

/// The recorder of the kernel's counters after a last reading, taken once the vCPU stopped;
/// none when they cannot be read.
fn stopped_recorder(shared: Option<Shared>) -> Option<Recorder> {
    let mut recorder = Arc::try_unwrap(shared?.recorder).ok()?.into_inner().ok()?;
    match recorder.poll_stopped() {
        Ok(()) => Some(recorder),
        Err(e) => {
            log::warn!("cannot read the kernel's counters: {e}");
            None
        }
    }
}

/// How the run ended, from why the event loop stopped and how the vCPU ended; an error where
/// the vCPU thread failed.
fn outcome(host_stop: StopReason, end: VcpuEnd, vcpu_fd: &VcpuFd, stats: Option<&StatsPage>) -> Result<Outcome, Error> {
    Ok(match (host_stop, end) {
        (_, VcpuEnd::Shutdown(c)) => Outcome::Shutdown(c),
        (_, VcpuEnd::Crash(crash, registers)) => Outcome::Crashed { crash, registers },
        (_, VcpuEnd::Error(e)) => return Err(Error::VcpuRun(e)),
        (_, VcpuEnd::Confined(e)) => return Err(Error::Seccomp(e)),
        (_, VcpuEnd::GdbKilled) => Outcome::GdbKilled,
        (_, VcpuEnd::GdbFailed(e)) => return Err(Error::Host("GDB connection", io::Error::other(e))),
        (StopReason::Timeout(after), VcpuEnd::Stopped) => {
            Outcome::Timeout { after, held_by: who_held_the_cpu(vcpu_fd, stats) }
        }
        (StopReason::Signal(s), VcpuEnd::Stopped) => Outcome::Interrupted(s),
        (StopReason::OutputClosed, VcpuEnd::Stopped) => Outcome::OutputClosed,
        (StopReason::VcpuDone, VcpuEnd::Stopped) => unreachable!("the vCPU stops on its own only with an end"),
    })
}

/// Whether KVM can keep interrupts off during a single step (`KVM_GUESTDBG_BLOCKIRQ`, offered
/// through `KVM_CAP_SET_GUEST_DEBUG2`), so that `stepi` does not land in the timer's handler.
fn block_irq_in_steps(vm: &kvm_ioctls::VmFd) -> bool {
    let flags = vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2));
    flags > 0 && flags as u32 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ != 0
}

/// How each application processor's thread confines itself: with the first vCPU's filter.
fn ap_confine(filter: &Option<Filter>) -> impl Fn() -> aps::Confine {
    let filter = filter.clone();
    move || -> aps::Confine {
        let filter = filter.clone();
        Box::new(move || confine(filter.as_ref(), false))
    }
}

/// Installs a thread's seccomp filter, if any, and runs the `--seccomp-check` test hook.
fn confine(filter: Option<&Filter>, check: bool) -> Result<(), crate::seccomp::Error> {
    if let Some(filter) = filter {
        crate::seccomp::install(filter)?;
    }
    if check && crate::seccomp::attempt_forbidden_call() {
        log::warn!("seccomp check: a forbidden system call went through (no filter in this thread)");
    }
    Ok(())
}

/// Kicks a vCPU thread out of `KVM_RUN` until it has ended (it has seen the stop flag).
fn kick_until_ended<T>(thread: &JoinHandle<T>) {
    while !thread.is_finished() {
        // A signal may land just before KVM_RUN starts; kicking again until the thread ends
        // closes that window.
        let _ = thread.kill(SIGRTMIN());
        std::thread::sleep(Duration::from_millis(1));
    }
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
