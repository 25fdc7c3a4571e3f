//! Watching a run from the host while the guest runs: a poller that follows the kernel's stats
//! page every few milliseconds (and hands each update to an observer, e.g. `--watch`), and what
//! it shares with the `--api-sock` server ([`crate::observe::api`]), which answers every
//! connection with the current report as JSON.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::host::HostInfo;
use crate::observe::recorder::Recorder;
use crate::observe::report;
use crate::vmexit::{VmExitCounts, VmExitTotals};

pub use crate::observe::api::{ApiError, ApiServer};

/// How often the stats page is read while the guest runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What an observer sees at each poll.
pub struct Live<'a> {
    pub recorder: &'a Recorder,
    pub exits: VmExitTotals,
    pub elapsed: Duration,
}

/// Called after every poll (from the event-loop thread).
pub type Observer = Box<dyn FnMut(&Live) + Send>;

/// What the monitors share with the run.
#[derive(Clone)]
pub struct Shared {
    pub recorder: Arc<Mutex<Recorder>>,
    pub exits: Arc<VmExitCounts>,
    pub started: Instant,
    pub host: HostInfo,
    pub tsc_khz: Option<u32>,
    pub kvm_stats: Option<Arc<crate::observe::kvm_stats::KvmStats>>,
    /// The UART, whose console notes when the kernel's banner appeared.
    pub serial: Arc<Mutex<crate::devices::SerialDevice>>,
}

impl Shared {
    /// When the kernel's banner appeared, if it has.
    fn banner_at(&self) -> Option<Instant> {
        crate::devices::lock_serial(&self.serial).writer().banner_at()
    }

    /// The live report (no outcome yet).
    pub fn report(&self) -> report::Report {
        let recorder = self.recorder.lock().expect("recorder lock poisoned");
        let exits = self.exits.totals();
        report::Report {
            schema: report::SCHEMA,
            lde_version: env!("CARGO_PKG_VERSION"),
            host: report::host(&self.host, self.tsc_khz),
            outcome: None,
            timing: report::Timing {
                banner_ms: self.banner_at().map(|t| t.duration_since(self.started).as_secs_f64() * 1e3),
                elapsed_ms: self.started.elapsed().as_secs_f64() * 1e3,
            },
            vm_exits: report::VmExits {
                handled_by_lde: exits,
                total: exits.total(),
                kvm: self.kvm_stats.as_ref().map(|k| k.read()),
            },
            guest: report::guest(&recorder),
            disks: Vec::new(),
        }
    }
}

/// Reads the stats page every [`POLL_INTERVAL`].
pub struct Poller {
    timer: TimerFd,
    shared: Shared,
    observer: Option<Observer>,
    failed: bool,
}

impl Poller {
    pub fn new(shared: Shared, observer: Option<Observer>) -> std::io::Result<Poller> {
        let mut timer = TimerFd::new().map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        timer.reset(POLL_INTERVAL, Some(POLL_INTERVAL)).map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        Ok(Poller { timer, shared, observer, failed: false })
    }
}

impl MutEventSubscriber for Poller {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.timer.as_raw_fd(), EventSet::IN)) {
            log::warn!("cannot watch the stats page: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.timer.wait();
        let mut recorder = self.shared.recorder.lock().expect("recorder lock poisoned");
        if let Err(e) = recorder.poll() {
            if !self.failed {
                log::warn!("cannot read the kernel's counters: {e}");
                self.failed = true;
            }
            return;
        }
        if let Some(observer) = &mut self.observer {
            observer(&Live {
                recorder: &recorder,
                exits: self.shared.exits.totals(),
                elapsed: self.shared.started.elapsed(),
            });
        }
    }
}
