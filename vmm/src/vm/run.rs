//! Running a built [`Vm`]: the vCPU on its own thread, and on the main thread an event loop
//! that forwards stdin, polls the stats page, serves the API socket, and stops the run on the
//! vCPU's end, the timeout, or SIGINT/SIGTERM (read from a signalfd).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};
use vmm_sys_util::timerfd::TimerFd;

use super::nmi::NmiSender;
use super::outcome::who_held_the_cpu;
use super::signals::SignalFd;
use super::{Error, Outcome, RunReport, Vm};
use crate::devices::{Devices, ExitPort, InputStatus, SerialInput};
use crate::observe::monitor::Poller;
use crate::vcpu::{self, ExitHook, VcpuEnd};

impl Vm {
    /// Runs the vCPU on its own thread until the guest ends, the timeout expires or a signal
    /// arrives.
    pub fn run(self) -> Result<RunReport, Error> {
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
        } = self;

        // SIGINT and SIGTERM are read from a signalfd by the event loop; block them before the vCPU
        // thread exists so that it inherits the mask and never takes them.
        let signals = SignalFd::new(&[libc::SIGINT, libc::SIGTERM]).map_err(|e| Error::Host("signalfd", e))?;
        register_signal_handler(SIGRTMIN(), kick_handler)
            .map_err(|e| Error::Host("vCPU kick signal", io::Error::from_raw_os_error(e.errno())))?;

        let input_status = InputStatus::default();
        let stop = Arc::new(AtomicBool::new(false));
        let vcpu_done = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("eventfd", e))?;
        let vcpu_thread = {
            let stop = stop.clone();
            let done = vcpu_done.try_clone().map_err(|e| Error::Host("eventfd", e))?;
            let mut devices =
                Devices { serial: serial.clone(), exit_port: ExitPort, input_status: input_status.clone() };
            let counts = exits.clone();
            std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn(move || {
                    let hook = exit_hook.as_deref_mut().map(|h| h as &mut dyn ExitHook);
                    let end = vcpu::run(&mut vcpu_fd, &mut devices, &stop, &counts, hook);
                    let _ = done.write(1);
                    (end, vcpu_fd)
                })
                .map_err(|e| Error::Host("vCPU thread", e))?
        };

        let nmis = match send_nmis {
            true => Some(NmiSender::start(_vm.clone()).map_err(|e| Error::Host("NMI thread", e))?),
            false => None,
        };
        let control = Arc::new(Mutex::new(Control::new(signals, vcpu_done, timeout)?));
        let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new()
            .map_err(|e| Error::Host("event loop", io::Error::other(format!("{e:?}"))))?;
        events.add_subscriber(control.clone());
        if let Some(fd) = input {
            events.add_subscriber(Arc::new(Mutex::new(SerialInput::new(serial.clone(), fd, input_status.clone()))));
        }
        if let Some(shared) = &shared {
            let poller = Poller::new(shared.clone(), observer).map_err(|e| Error::Host("stats poller", e))?;
            events.add_subscriber(Arc::new(Mutex::new(poller)));
        }
        let api = api.map(|api| {
            let api = Arc::new(Mutex::new(api));
            events.add_subscriber(api.clone());
            api
        });
        let host_stop = loop {
            if let Err(e) = events.run() {
                log::warn!("event loop: {e:?}");
            }
            if let Some(reason) = control.lock().expect("control lock poisoned").stop {
                break reason;
            }
        };

        stop.store(true, Ordering::Release);
        while !vcpu_thread.is_finished() {
            // A signal may land just before KVM_RUN starts; kicking again until the thread ends
            // closes that window.
            let _ = vcpu_thread.kill(SIGRTMIN());
            std::thread::sleep(Duration::from_millis(1));
        }
        let (end, vcpu_fd) = vcpu_thread.join().expect("the vCPU thread does not panic");
        if let Some(nmis) = nmis {
            let sent = nmis.stop().map_err(|e| Error::Host("KVM_SIGNAL_MSI (NMI)", e))?;
            log::info!("test hook: sent the guest {sent} NMIs");
        }
        let ended_after = started.elapsed();
        drop(events);
        drop(api);
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
            (_, VcpuEnd::GuestExit(c)) => Outcome::GuestExit(c),
            (_, VcpuEnd::Crash(crash, registers)) => Outcome::Crashed { crash, registers },
            (_, VcpuEnd::Error(e)) => return Err(Error::VcpuRun(e)),
            (StopReason::Timeout(after), VcpuEnd::Stopped) => {
                Outcome::Timeout { after, held_by: who_held_the_cpu(&vcpu_fd, stats) }
            }
            (StopReason::Signal(s), VcpuEnd::Stopped) => Outcome::Interrupted(s),
            (StopReason::VcpuDone, VcpuEnd::Stopped) => unreachable!("the vCPU stops on its own only with an end"),
        };
        let console = serial.lock().expect("serial lock poisoned");
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

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug)]
enum StopReason {
    VcpuDone,
    Timeout(Duration),
    Signal(i32),
}

/// Watches the vCPU's end, the timeout and the stop signals.
struct Control {
    signals: SignalFd,
    vcpu_done: EventFd,
    timer: Option<(TimerFd, Duration)>,
    stop: Option<StopReason>,
}

impl Control {
    fn new(signals: SignalFd, vcpu_done: EventFd, timeout: Option<Duration>) -> Result<Self, Error> {
        let timer = match timeout {
            Some(t) => {
                let mut timer =
                    TimerFd::new().map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                timer.reset(t, None).map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                Some((timer, t))
            }
            None => None,
        };
        Ok(Self { signals, vcpu_done, timer, stop: None })
    }
}

impl MutEventSubscriber for Control {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![self.signals.as_raw_fd(), self.vcpu_done.as_raw_fd()];
        fds.extend(self.timer.as_ref().map(|(t, _)| t.as_raw_fd()));
        for fd in fds {
            ops.add(Events::new_raw(fd, EventSet::IN)).expect("a fresh fd can be added to the event loop");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.vcpu_done.as_raw_fd() {
            let _ = self.vcpu_done.read();
            self.stop.get_or_insert(StopReason::VcpuDone);
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
