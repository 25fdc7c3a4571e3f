//! The event-loop thread of a run, `lde-events`: it waits on what ends a run ([`Control`]: the
//! vCPU's end, the timeout, the stop signals read from a signalfd, lde's output closed) and on
//! what it serves meanwhile (the guest's stdin, the stats-page poller, the API socket).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::signals::SignalFd;
use super::Error;
use crate::devices::SerialInput;
use crate::observe::monitor::{ApiServer, Observer, Poller, Shared};

/// What the event loop waits on besides its [`Control`].
pub(super) type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The event loop's subscribers besides its [`Control`]: the guest's stdin, the stats-page
/// poller, the API server.
pub(super) fn subscribers(
    serial_input: Option<SerialInput>,
    shared: Option<&Shared>,
    observer: Option<Observer>,
    api: Option<Arc<Mutex<ApiServer>>>,
) -> Result<Vec<Subscriber>, Error> {
    let mut subscribers: Vec<Subscriber> = Vec::new();
    if let Some(input) = serial_input {
        subscribers.push(Arc::new(Mutex::new(input)));
    }
    if let Some(shared) = shared {
        let poller = Poller::new(shared.clone(), observer).map_err(|e| Error::Host("stats poller", e))?;
        subscribers.push(Arc::new(Mutex::new(poller)));
    }
    subscribers.extend(api.map(|api| api as Subscriber));
    Ok(subscribers)
}

/// Starts the event-loop thread; `confine` installs its seccomp filter once its epoll set is
/// built, before it waits.
pub(super) fn spawn(
    control: Control,
    subscribers: Vec<Subscriber>,
    confine: impl FnOnce() -> Result<(), crate::seccomp::Error> + Send + 'static,
) -> Result<JoinHandle<Result<StopReason, Error>>, Error> {
    std::thread::Builder::new()
        .name("lde-events".into())
        .spawn(move || event_loop(control, subscribers, confine))
        .map_err(|e| Error::Host("event-loop thread", e))
}

/// The event-loop thread: waits on the run's fds until something stops the run.
fn event_loop(
    control: Control,
    subscribers: Vec<Subscriber>,
    confine: impl FnOnce() -> Result<(), crate::seccomp::Error>,
) -> Result<StopReason, Error> {
    let control = Arc::new(Mutex::new(control));
    let mut events =
        EventManager::<Subscriber>::new().map_err(|e| Error::Host("event loop", io::Error::other(format!("{e:?}"))))?;
    events.add_subscriber(control.clone());
    for subscriber in subscribers {
        events.add_subscriber(subscriber);
    }
    confine()?;
    loop {
        if let Err(e) = events.run() {
            log::warn!("event loop: {e:?}");
        }
        if let Some(reason) = control.lock().expect("control lock poisoned").stop {
            return Ok(reason);
        }
    }
}

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug)]
pub(super) enum StopReason {
    VcpuDone,
    Timeout(Duration),
    Signal(i32),
    OutputClosed,
}

/// Watches the vCPU's end, the timeout, the stop signals and lde's output.
pub(super) struct Control {
    signals: SignalFd,
    vcpu_done: EventFd,
    timer: Option<(TimerFd, Duration)>,
    output_closed: Option<RawFd>,
    stop: Option<StopReason>,
}

impl Control {
    /// The timeout counts from `started` (lde's start): it covers building the VM too.
    pub(super) fn new(
        signals: SignalFd,
        vcpu_done: EventFd,
        timeout: Option<Duration>,
        started: Instant,
    ) -> Result<Self, Error> {
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
