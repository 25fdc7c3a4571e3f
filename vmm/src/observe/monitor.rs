//! Watching a run from the host while the guest runs: a poller that follows the kernel's stats
//! page every few milliseconds (and hands each update to an observer, e.g. `--watch`), and the
//! `--api-sock` server that answers every connection with the current report as JSON.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::exit::{ExitCounts, ExitTotals};
use crate::host::HostInfo;
use crate::observe::recorder::Recorder;
use crate::observe::report;

/// How often the stats page is read while the guest runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What an observer sees at each poll.
pub struct Live<'a> {
    pub recorder: &'a Recorder,
    pub exits: ExitTotals,
    pub elapsed: Duration,
}

/// Called after every poll (from the event-loop thread).
pub type Observer = Box<dyn FnMut(&Live) + Send>;

/// What the monitors share with the run.
#[derive(Clone)]
pub struct Shared {
    pub recorder: Arc<Mutex<Recorder>>,
    pub exits: Arc<ExitCounts>,
    pub started: Instant,
    pub host: HostInfo,
    pub tsc_khz: Option<u32>,
    pub kvm_stats: Option<Arc<crate::observe::kvm_stats::KvmStats>>,
}

impl Shared {
    /// The live report (no outcome yet).
    pub fn report(&self) -> report::Report {
        let recorder = self.recorder.lock().expect("recorder lock poisoned");
        let exits = self.exits.totals();
        report::Report {
            schema: report::SCHEMA,
            lde_version: env!("CARGO_PKG_VERSION"),
            host: report::host(&self.host, self.tsc_khz),
            outcome: None,
            timing: report::Timing { banner_ms: None, elapsed_ms: self.started.elapsed().as_secs_f64() * 1e3 },
            vm_exits: report::VmExits {
                handled_by_lde: exits,
                total: exits.total(),
                kvm: self.kvm_stats.as_ref().map(|k| k.read()),
            },
            guest: report::guest(&recorder),
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

/// Why the API socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} already exists and is not a socket: remove it or choose another --api-sock path")]
    Exists(PathBuf),
    #[error("{0} is served by another running process: choose another --api-sock path")]
    InUse(PathBuf),
    #[error("cannot listen on {0}")]
    Bind(PathBuf, #[source] std::io::Error),
}

/// Serves the live report as JSON: one document per connection, then the server closes it.
pub struct ApiServer {
    listener: UnixListener,
    path: PathBuf,
    shared: Shared,
}

impl ApiServer {
    /// Listens on `path`. A socket left there by a run that ended without removing it (killed
    /// with SIGKILL, say) is replaced when nobody answers on it; anything else is kept.
    pub fn bind(path: &Path, shared: Shared) -> Result<ApiServer, ApiError> {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(ApiError::InUse(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    log::debug!("replacing the stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(|e| ApiError::Bind(path.to_owned(), e))?;
                }
                Err(e) => return Err(ApiError::Bind(path.to_owned(), e)),
            },
            Ok(_) => return Err(ApiError::Exists(path.to_owned())),
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(|e| ApiError::Bind(path.to_owned(), e))?;
        listener.set_nonblocking(true).map_err(|e| ApiError::Bind(path.to_owned(), e))?;
        Ok(ApiServer { listener, path: path.to_owned(), shared })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl MutEventSubscriber for ApiServer {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.listener.as_raw_fd(), EventSet::IN)) {
            log::warn!("cannot serve {}: {e:?}", self.path.display());
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        while let Ok((mut stream, _)) = self.listener.accept() {
            let mut body = match serde_json::to_vec(&self.shared.report()) {
                Ok(body) => body,
                Err(e) => {
                    log::warn!("cannot encode the report: {e}");
                    return;
                }
            };
            body.push(b'\n');
            // A client that goes away early only loses its own answer.
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            if let Err(e) = stream.write_all(&body) {
                log::debug!("API client: {e}");
            }
        }
    }
}
