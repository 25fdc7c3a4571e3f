//! Watching a run from the host while the guest runs: a poller that follows the kernel's stats
//! page every few milliseconds (and hands each update to an observer, e.g. `--watch`), and the
//! `--api-sock` server that answers every connection with the current report as JSON.

use std::io::{Read, Write};
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
            let _ = stream.set_read_timeout(Some(REQUEST_WAIT));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let answer = answer(&read_request(&mut stream), body);
            if let Err(e) = stream.write_all(&answer) {
                log::debug!("API client: {e}");
            }
        }
    }
}

/// How long a client may take to send its request (one that sends none gets plain JSON).
const REQUEST_WAIT: Duration = Duration::from_millis(200);
/// Most bytes of a request read.
const REQUEST_MAX: usize = 8192;

/// What the client sent before it stopped, closed its side, or its time ran out: up to the end
/// of an HTTP request head.
fn read_request(stream: &mut impl Read) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while request.len() < REQUEST_MAX && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    request
}

/// The answer to `request`: the report as an HTTP/1.1 response to an HTTP request (`curl
/// --unix-socket PATH http://localhost/`), as plain JSON to a client that sent nothing
/// (`lde stats`).
fn answer(request: &[u8], body: Vec<u8>) -> Vec<u8> {
    if request.is_empty() {
        return body;
    }
    let (status, body, kind) = if request.starts_with(b"GET ") || request.starts_with(b"HEAD ") {
        ("200 OK", body, "application/json")
    } else if request.windows(5).any(|w| w == b"HTTP/") {
        ("405 Method Not Allowed", b"only GET is served\n".to_vec(), "text/plain")
    } else {
        ("400 Bad Request", b"send an HTTP GET request, or nothing\n".to_vec(), "text/plain")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    if !request.starts_with(b"HEAD ") {
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_http_and_plain_clients() {
        assert_eq!(answer(b"", b"{}\n".to_vec()), b"{}\n");
        let http = answer(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"{}\n".to_vec());
        let text = String::from_utf8(http).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n") && text.ends_with("\r\n\r\n{}\n"), "{text}");
        let post = String::from_utf8(answer(b"POST / HTTP/1.1\r\n\r\n", b"{}".to_vec())).unwrap();
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(read_request(&mut &request[..]), request);
    }
}
