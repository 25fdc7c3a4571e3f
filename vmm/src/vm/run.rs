//! Running a built [`Vm`]: the vCPU on its own thread, and on another an event loop that
//! forwards stdin, polls the stats page, serves the API socket, and stops the run on the vCPU's
//! end, the timeout, a signal (read from a signalfd) or lde's output closed. Each of the two
//! threads confines itself with its seccomp filter before it starts; the calling thread builds,
//! waits and cleans up.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};
use vmm_sys_util::timerfd::TimerFd;

use super::nmi::NmiSender;
use super::outcome::who_held_the_cpu;
use super::signals::SignalFd;
use super::{Error, Outcome, RunReport, Vm};
use crate::devices::{ConsolePort, Devices, InputStatus, SerialInput, ShutdownPort};
use crate::observe::monitor::Poller;
use crate::seccomp::Thread;
use crate::vcpu::{self, VcpuEnd, VmExitHook};

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

    #[allow(clippy::too_many_lines, reason = "starts, joins and reads the run's threads in one place; not yet split")]
    fn run_with(self, gdb: Option<(crate::gdb::Listener, crate::gdb::Measured)>) -> Result<RunReport, Error> {
        let Vm {
            mut vcpu_fd,
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
        } = self;

        register_signal_handler(SIGRTMIN(), kick_handler)
            .map_err(|e| Error::Host("vCPU kick signal", io::Error::from_raw_os_error(e.errno())))?;
        // Keystrokes reach the guest one at a time. Restored when this guard drops, before the
        // run returns; the stop signals stay blocked until the process ends (signals.rs).
        let _raw = input.and_then(crate::terminal::RawMode::enable);
        let (vcpu_filter, events_filter) = match filters {
            Some((_, events)) if gdb.is_some() => (Some(crate::seccomp::filter(Thread::GdbVcpu)?), Some(events)),
            Some((vcpu, events)) => (Some(vcpu), Some(events)),
            None => (None, None),
        };
        let gdb_memory = _mem.clone();
        let block_irq = block_irq_in_steps(&_vm);
        let ring3_blind = host.kvm == crate::host::KvmKind::Pvm;

        if let (Some(hook), Some(stats)) = (exit_hook.as_deref_mut(), &kvm_stats) {
            hook.attach_kvm_stats(stats.clone());
        }
        let input_status = InputStatus::default();
        let stop = Arc::new(AtomicBool::new(false));
        let vcpu_done = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("eventfd", e))?;
        // The output-closed eventfd is made on first use: here, before the vCPU thread confines
        // itself, and not by that thread when its first console write finds the reader gone
        // (eventfd2 is not on its seccomp allow-list; a loaded host let the guest print before
        // the event loop had asked for the fd).
        let _ = crate::stdio::closed_event();
        let vcpu_thread = {
            let stop = stop.clone();
            let done = vcpu_done.try_clone().map_err(|e| Error::Host("eventfd", e))?;
            let mut devices = Devices {
                serial: serial.clone(),
                shutdown_port: ShutdownPort,
                input_status: input_status.clone(),
                console: ConsolePort::new(_mem.clone()),
            };
            let counts = exits.clone();
            std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn(move || {
                    let check = seccomp_check == Some(Thread::Vcpu);
                    let end = match &gdb {
                        Some((listener, measured)) => {
                            let session = crate::gdb::Session {
                                listener,
                                vcpu: &mut vcpu_fd,
                                mem: gdb_memory,
                                devices: &mut devices,
                                counts: &counts,
                                stop: stop.clone(),
                                block_irq,
                                ring3_blind,
                                measured: *measured,
                            };
                            crate::gdb::serve(session, || confine(vcpu_filter.as_ref(), check))
                        }
                        None => match confine(vcpu_filter.as_ref(), check) {
                            Ok(()) => {
                                let hook = exit_hook.as_deref_mut().map(|h| h as &mut dyn VmExitHook);
                                vcpu::run(&mut vcpu_fd, &mut devices, &stop, &counts, hook)
                            }
                            Err(e) => VcpuEnd::Confined(e),
                        },
                    };
                    let _ = done.write(1);
                    (end, vcpu_fd)
                })
                .map_err(|e| Error::Host("vCPU thread", e))?
        };

        let nmis = match send_nmis {
            true => Some(NmiSender::start(_vm.clone()).map_err(|e| Error::Host("NMI thread", e))?),
            false => None,
        };
        let control = Control::new(signals, vcpu_done, timeout, started)?;
        let mut subscribers: Vec<Arc<Mutex<dyn MutEventSubscriber + Send>>> = Vec::new();
        if let Some(fd) = input {
            subscribers.push(Arc::new(Mutex::new(SerialInput::new(serial.clone(), fd, input_status.clone()))));
        }
        if let Some(shared) = &shared {
            let poller = Poller::new(shared.clone(), observer).map_err(|e| Error::Host("stats poller", e))?;
            subscribers.push(Arc::new(Mutex::new(poller)));
        }
        // The server stays referenced here, so that it is dropped (and its socket removed) on
        // this thread, whose system calls are not filtered.
        let api = api.map(|api| Arc::new(Mutex::new(api)));
        subscribers.extend(api.clone().map(|api| api as Arc<Mutex<dyn MutEventSubscriber + Send>>));
        let events_thread = std::thread::Builder::new()
            .name("lde-events".into())
            .spawn(move || event_loop(control, subscribers, events_filter, seccomp_check == Some(Thread::EventLoop)))
            .map_err(|e| Error::Host("event-loop thread", e))?;
        let host_stop =
            events_thread.join().unwrap_or(Err(Error::Host("event-loop thread", io::Error::other("it panicked"))));

        stop.store(true, Ordering::Release);
        while !vcpu_thread.is_finished() {
            // A signal may land just before KVM_RUN starts; kicking again until the thread ends
            // closes that window.
            let _ = vcpu_thread.kill(SIGRTMIN());
            std::thread::sleep(Duration::from_millis(1));
        }
        // A vCPU thread that panicked (its message is already on stderr) is this run's error,
        // reported once; the NMI sender is stopped and the API socket removed all the same.
        let joined = vcpu_thread.join();
        let sent_nmis = nmis.map(NmiSender::stop);
        let ended_after = started.elapsed();
        drop(api);
        let (end, vcpu_fd) = joined.map_err(|_| Error::Host("vCPU thread", io::Error::other("it panicked")))?;
        if let Some(sent) = sent_nmis {
            let sent = sent.map_err(|e| Error::Host("KVM_SIGNAL_MSI (NMI)", e))?;
            log::info!("test hook: sent the guest {sent} NMIs");
        }
        let host_stop = host_stop?;
        let recorder = shared.and_then(|shared| {
            let mut recorder = Arc::try_unwrap(shared.recorder).ok()?.into_inner().ok()?;
            match recorder.poll_stopped() {
                Ok(()) => Some(recorder),
                Err(e) => {
                    log::warn!("cannot read the kernel's counters: {e}");
                    None
                }
            }
        });
        let stats = recorder.as_ref().and_then(|r| r.last.as_deref());

        let outcome = match (host_stop, end) {
            (_, VcpuEnd::Shutdown(c)) => Outcome::Shutdown(c),
            (_, VcpuEnd::Crash(crash, registers)) => Outcome::Crashed { crash, registers },
            (_, VcpuEnd::Error(e)) => return Err(Error::VcpuRun(e)),
            (_, VcpuEnd::Confined(e)) => return Err(Error::Seccomp(e)),
            (_, VcpuEnd::GdbKilled) => Outcome::GdbKilled,
            (_, VcpuEnd::GdbFailed(e)) => return Err(Error::Host("GDB connection", io::Error::other(e))),
            (StopReason::Timeout(after), VcpuEnd::Stopped) => {
                Outcome::Timeout { after, held_by: who_held_the_cpu(&vcpu_fd, stats) }
            }
            (StopReason::Signal(s), VcpuEnd::Stopped) => Outcome::Interrupted(s),
            (StopReason::OutputClosed, VcpuEnd::Stopped) => Outcome::OutputClosed,
            (StopReason::VcpuDone, VcpuEnd::Stopped) => unreachable!("the vCPU stops on its own only with an end"),
        };
        let console = crate::devices::lock_serial(&serial);
        let banner_after = console.writer().banner_at().map(|t| t.duration_since(started));
        Ok(RunReport {
            outcome,
            host,
            tsc_khz,
            banner_after,
            ended_after,
            exits: exits.totals(),
            kvm_stats: kvm_stats.map(|k| k.read()),
            serial_bytes: console.writer().bytes(),
            recorder,
        })
    }
}

/// Whether KVM can keep interrupts off during a single step (`KVM_GUESTDBG_BLOCKIRQ`, offered
/// through `KVM_CAP_SET_GUEST_DEBUG2`), so that `stepi` does not land in the timer's handler.
fn block_irq_in_steps(vm: &kvm_ioctls::VmFd) -> bool {
    let flags = vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2));
    flags > 0 && flags as u32 & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ != 0
}

/// Installs a thread's seccomp filter, if any, and runs the `--seccomp-check` test hook.
fn confine(filter: Option<&Vec<seccompiler::BpfProgram>>, check: bool) -> Result<(), crate::seccomp::Error> {
    if let Some(filter) = filter {
        crate::seccomp::install(filter)?;
    }
    if check && crate::seccomp::attempt_forbidden_call() {
        log::warn!("seccomp check: a forbidden system call went through (no filter in this thread)");
    }
    Ok(())
}

/// The event-loop thread: waits on the run's fds until something stops the run.
fn event_loop(
    control: Control,
    subscribers: Vec<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
    filter: Option<Vec<seccompiler::BpfProgram>>,
    check: bool,
) -> Result<StopReason, Error> {
    let control = Arc::new(Mutex::new(control));
    let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new()
        .map_err(|e| Error::Host("event loop", io::Error::other(format!("{e:?}"))))?;
    events.add_subscriber(control.clone());
    for subscriber in subscribers {
        events.add_subscriber(subscriber);
    }
    confine(filter.as_ref(), check)?;
    loop {
        if let Err(e) = events.run() {
            log::warn!("event loop: {e:?}");
        }
        if let Some(reason) = control.lock().expect("control lock poisoned").stop {
            return Ok(reason);
        }
    }
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug)]
enum StopReason {
    VcpuDone,
    Timeout(Duration),
    Signal(i32),
    OutputClosed,
}

/// Watches the vCPU's end, the timeout, the stop signals and lde's output.
struct Control {
    signals: SignalFd,
    vcpu_done: EventFd,
    timer: Option<(TimerFd, Duration)>,
    output_closed: Option<RawFd>,
    stop: Option<StopReason>,
}

impl Control {
    /// The timeout counts from `started` (lde's start): it covers building the VM too.
    fn new(signals: SignalFd, vcpu_done: EventFd, timeout: Option<Duration>, started: Instant) -> Result<Self, Error> {
        let timer = match timeout {
            Some(t) => {
                let mut timer =
                    TimerFd::new().map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                // Zero would disarm the timer: a timeout already past fires at once instead.
                let left = t.saturating_sub(started.elapsed()).max(Duration::from_nanos(1));
                timer.reset(left, None).map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                Some((timer, t))
            }
            None => None,
        };
        Ok(Self { signals, vcpu_done, timer, output_closed: crate::stdio::closed_event(), stop: None })
    }
}

impl MutEventSubscriber for Control {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![self.signals.as_raw_fd(), self.vcpu_done.as_raw_fd()];
        fds.extend(self.timer.as_ref().map(|(t, _)| t.as_raw_fd()));
        fds.extend(self.output_closed);
        for fd in fds {
            ops.add(Events::new_raw(fd, EventSet::IN)).expect("a fresh fd can be added to the event loop");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.vcpu_done.as_raw_fd() {
            let _ = self.vcpu_done.read();
            self.stop.get_or_insert(StopReason::VcpuDone);
        } else if Some(fd) == self.output_closed {
            // Left readable: nothing else is waited for once the output is gone.
            self.stop.get_or_insert(StopReason::OutputClosed);
        } else if fd == self.signals.as_raw_fd() {
            if let Some(signal) = self.signals.read() {
                self.stop.get_or_insert(StopReason::Signal(signal));
            }
        } else if let Some((timer, t)) = &mut self.timer {
            if fd == timer.as_raw_fd() {
                let _ = timer.wait();
                self.stop.get_or_insert(StopReason::Timeout(*t));
            }
        }
    }
}
