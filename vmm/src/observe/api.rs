//! `lde run --api-sock PATH`: serves the live report as JSON, one document per connection,
//! without ever making the event loop wait for a client.
//!
//! The event loop also forwards stdin, polls the stats page and watches the timeout and the stop
//! signals, so a client must not hold it: every socket is non-blocking and registered with the
//! event manager, each read and write takes what is there and returns, and one timer enforces
//! the deadlines. A client has [`REQUEST_WAIT`] from its connection to send its request (one that
//! sends nothing, or too little, is answered with what it sent by then) and [`CLIENT_DEADLINE`]
//! for the whole exchange (a client that does not read its answer is dropped). At most
//! [`MAX_CLIENTS`] are served at once; the others wait in the listen backlog, unaccepted, until
//! one leaves.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::observe::monitor::Shared;

/// How long a client may take to send its request, from its connection.
pub const REQUEST_WAIT: Duration = Duration::from_millis(200);
/// How long a client's whole exchange may take, from its connection to the last byte written.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Most clients served at once.
pub const MAX_CLIENTS: usize = 8;
/// Most bytes of a request read.
const REQUEST_MAX: usize = 8192;

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

/// One connection, from its accept to its last byte.
struct Client {
    stream: UnixStream,
    accepted: Instant,
    request: Vec<u8>,
    /// The answer once the request is complete, and how much of it has been written.
    answer: Option<(Vec<u8>, usize)>,
}

impl Client {
    /// When the event loop must next look at it whatever the socket says.
    fn deadline(&self) -> Instant {
        match self.answer {
            None => self.accepted + REQUEST_WAIT,
            Some(_) => self.accepted + CLIENT_DEADLINE,
        }
    }
}

/// What became of a client after some progress.
#[derive(PartialEq)]
enum Progress {
    /// Waiting for its socket (or its deadline).
    Waiting,
    /// Done with, answered or not.
    Finished,
}

/// Serves the live report as JSON: one document per connection, then the server closes it.
pub struct ApiServer {
    listener: UnixListener,
    path: PathBuf,
    shared: Shared,
    timer: TimerFd,
    /// The deadline the timer is armed for, if any.
    armed: Option<Instant>,
    clients: BTreeMap<RawFd, Client>,
    /// Whether the listener is watched (not while [`MAX_CLIENTS`] are served).
    listening: bool,
}

impl ApiServer {
    /// Listens on `path`. A socket left there by a run that ended without removing it (killed
    /// with SIGKILL, say) is replaced when nobody answers on it; anything else is kept.
    pub fn bind(path: &Path, shared: Shared) -> Result<ApiServer, ApiError> {
        use std::os::unix::fs::FileTypeExt;
        let bind_error = |e| ApiError::Bind(path.to_owned(), e);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(ApiError::InUse(path.to_owned())),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    log::debug!("replacing the stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(bind_error)?;
                }
                Err(e) => return Err(bind_error(e)),
            },
            Ok(_) => return Err(ApiError::Exists(path.to_owned())),
            Err(_) => {}
        }
        let timer = nonblocking_timer().map_err(bind_error)?;
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        let server = ApiServer {
            listener,
            path: path.to_owned(),
            shared,
            timer,
            armed: None,
            clients: BTreeMap::new(),
            listening: false,
        };
        // Dropped (and the socket file removed) if this fails.
        server.listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(server)
    }

    /// Accepts the clients waiting, as many as there is room for.
    fn accept(&mut self, ops: &mut EventOps) {
        while self.clients.len() < MAX_CLIENTS {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("API socket: accept: {e}");
                    return;
                }
            };
            let fd = stream.as_raw_fd();
            if let Err(e) = stream.set_nonblocking(true) {
                log::debug!("API client: {e}");
                continue;
            }
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                log::debug!("API client: cannot watch it: {e:?}");
                continue;
            }
            let client = Client { stream, accepted: Instant::now(), request: Vec::new(), answer: None };
            self.clients.insert(fd, client);
        }
    }

    /// Moves the client on `fd` on as far as its socket lets it, without waiting.
    fn serve(&mut self, fd: RawFd, ops: &mut EventOps) {
        let Some(client) = self.clients.get_mut(&fd) else { return };
        if client.answer.is_none() && read_request(client) {
            self.start_answer(fd, ops);
        }
        let Some(client) = self.clients.get_mut(&fd) else { return };
        if client.answer.is_some() && write_answer(client) == Progress::Finished {
            self.finish(fd, ops);
        }
    }

    /// The request of the client on `fd` is complete (or its time is up): its answer.
    fn start_answer(&mut self, fd: RawFd, ops: &mut EventOps) {
        let body = match serde_json::to_vec(&self.shared.report()) {
            Ok(mut body) => {
                body.push(b'\n');
                body
            }
            Err(e) => {
                log::warn!("cannot encode the report: {e}");
                return self.finish(fd, ops);
            }
        };
        let Some(client) = self.clients.get_mut(&fd) else { return };
        client.answer = Some((answer(&client.request, body), 0));
        if let Err(e) = ops.modify(Events::new_raw(fd, EventSet::OUT)) {
            log::debug!("API client: {e:?}");
            self.finish(fd, ops);
        }
    }

    /// Forgets the client on `fd` and closes its connection.
    fn finish(&mut self, fd: RawFd, ops: &mut EventOps) {
        let Some(client) = self.clients.remove(&fd) else { return };
        // While the socket is still open: epoll cannot remove a closed fd, and the event
        // manager would be left watching its number (and refuse the next socket given it).
        if let Err(e) = ops.remove(Events::new_raw(fd, EventSet::IN)) {
            log::warn!("API client: cannot stop watching it: {e:?}");
        }
        drop(client);
    }

    /// Answers the clients whose request time is up; drops those whose whole time is.
    fn enforce_deadlines(&mut self, ops: &mut EventOps) {
        let now = Instant::now();
        let due: Vec<(RawFd, bool)> =
            self.clients.iter().filter(|(_, c)| c.deadline() <= now).map(|(&fd, c)| (fd, c.answer.is_none())).collect();
        for (fd, reading) in due {
            if reading {
                log::debug!("API client: no whole request within {REQUEST_WAIT:?}; answering what it sent");
                self.start_answer(fd, ops);
                self.serve(fd, ops);
            } else {
                log::debug!("API client: not answered within {CLIENT_DEADLINE:?}; dropped");
                self.finish(fd, ops);
            }
        }
    }

    /// Watches the listener while there is room for a client, and arms the timer for the next
    /// deadline.
    fn rearm(&mut self, ops: &mut EventOps) {
        let room = self.clients.len() < MAX_CLIENTS;
        if room != self.listening {
            let events = Events::new_raw(self.listener.as_raw_fd(), EventSet::IN);
            let result = if room { ops.add(events) } else { ops.remove(events) };
            match result {
                Ok(()) => self.listening = room,
                Err(e) => log::warn!("API socket: {e:?}"),
            }
        }
        let next = self.clients.values().map(Client::deadline).min();
        if next == self.armed {
            return;
        }
        let result = match next {
            // Zero would disarm the timer: a deadline already past fires at once instead.
            Some(at) => {
                self.timer.reset(at.saturating_duration_since(Instant::now()).max(Duration::from_nanos(1)), None)
            }
            None => self.timer.clear(),
        };
        match result {
            Ok(()) => self.armed = next,
            Err(e) => log::warn!("API socket: cannot arm its timer: {e}"),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl MutEventSubscriber for ApiServer {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.timer, EventSet::IN)) {
            log::warn!("cannot serve {}: {e:?}", self.path.display());
            return;
        }
        self.rearm(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.listener.as_raw_fd() {
            self.accept(ops);
        } else if fd == self.timer.as_raw_fd() {
            // Non-blocking: the timer may have been re-armed since epoll said it fired.
            let _ = self.timer.wait();
        } else {
            self.serve(fd, ops);
        }
        self.enforce_deadlines(ops);
        self.rearm(ops);
    }
}

/// A timerfd whose read never waits (so that a read after a re-arm cannot stall the loop).
fn nonblocking_timer() -> std::io::Result<TimerFd> {
    let timer = TimerFd::new().map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    // SAFETY: F_GETFL and F_SETFL on a timerfd this function owns; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(timer.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(timer.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        return Err(std::io::Error::last_os_error());
    }
    Ok(timer)
}

/// Reads what the client has sent so far; returns whether its request is complete: the end of
/// an HTTP request head, the end of its input, an error, or [`REQUEST_MAX`] bytes.
fn read_request(client: &mut Client) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        if request_complete(&client.request) {
            return true;
        }
        let room = REQUEST_MAX.saturating_sub(client.request.len()).min(buf.len());
        match client.stream.read(&mut buf[..room]) {
            Ok(0) => return true,
            Ok(n) => client.request.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

fn request_complete(request: &[u8]) -> bool {
    request.len() >= REQUEST_MAX || request.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Writes what the client's socket takes of its answer.
fn write_answer(client: &mut Client) -> Progress {
    let Some((answer, written)) = &mut client.answer else { return Progress::Waiting };
    while *written < answer.len() {
        match client.stream.write(&answer[*written..]) {
            Ok(0) => return Progress::Finished,
            Ok(n) => *written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Waiting,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A client that goes away early only loses its own answer.
            Err(e) => {
                log::debug!("API client: {e}");
                return Progress::Finished;
            }
        }
    }
    Progress::Finished
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
        // What a slow client managed to send before its time ran out.
        let partial = String::from_utf8(answer(b"G", b"{}".to_vec())).unwrap();
        assert!(partial.starts_with("HTTP/1.1 400 "), "{partial}");
        assert!(request_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!request_complete(b"GET /metrics HTTP/1.1\r\n"));
        assert!(request_complete(&[b'x'; REQUEST_MAX]));
    }

    #[test]
    fn a_client_that_sends_slowly_is_cut_off_without_waiting() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut client = Client { stream: ours, accepted: Instant::now(), request: Vec::new(), answer: None };
        (&theirs).write_all(b"GE").unwrap();
        assert!(!read_request(&mut client), "nothing more to read: not complete, and no wait");
        assert_eq!(client.request, b"GE");
        (&theirs).write_all(b"T / HTTP/1.1\r\n\r\n").unwrap();
        assert!(read_request(&mut client));
        // An answer larger than the socket takes at once: written in part, never waited for.
        client.answer = Some((vec![b'x'; 4 << 20], 0));
        assert!(write_answer(&mut client) == Progress::Waiting);
        let (_, written) = client.answer.as_ref().unwrap();
        assert!(*written > 0 && *written < 4 << 20, "{written}");
        drop(theirs);
        assert!(write_answer(&mut client) == Progress::Finished, "a client that went away is done with");
    }
}
