//! Where GDB connects (`--gdb ADDR`: a TCP address or a Unix socket path), waiting for it, and
//! the connection gdbstub talks through.
//!
//! The connection reads and writes the socket with plain `recv`/`send`, so that the vCPU
//! thread's seccomp filter can name exactly those calls, and so that a read interrupted by the
//! vCPU kick signal gives up when lde is stopping (Ctrl-C, --timeout) instead of waiting for
//! GDB for ever.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::conn::{Connection, ConnectionExt};

/// The default of `--gdb` without a value (QEMU's `-s` uses the same port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:1234";

/// Where lde listens for GDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Addr {
    type Err = String;

    /// `HOST:PORT` with a numeric IPv4 or `[IPv6]` host, or a path (it contains a `/`).
    fn from_str(text: &str) -> Result<Self, String> {
        if text.contains('/') {
            return Ok(Addr::Unix(PathBuf::from(text)));
        }
        text.parse::<SocketAddr>().map(Addr::Tcp).map_err(|_| {
            format!("{text:?} is neither IP:PORT (e.g. {DEFAULT_ADDR}, [::1]:1234) nor a Unix socket path (with a '/', e.g. ./gdb.sock); with a PROGRAM after it, write --gdb=ADDR")
        })
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why lde cannot wait for GDB where it was asked to.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for GDB on {addr}: {reason}")]
pub struct ListenError {
    addr: Addr,
    reason: String,
}

/// A bound socket GDB will connect to. A Unix socket's file is removed when this drops.
pub struct Listener {
    socket: OwnedFd,
    /// The address as bound (a TCP port 0 replaced by the port the system chose).
    pub addr: Addr,
    unix_path: Option<PathBuf>,
}

impl Listener {
    /// Binds `addr`. An address in use or a path that exists is refused with a line that says so.
    pub fn bind(addr: &Addr) -> Result<Listener, ListenError> {
        let fail = |reason: String| ListenError { addr: addr.clone(), reason };
        match addr {
            Addr::Tcp(a) => {
                let listener = TcpListener::bind(a).map_err(|e| {
                    fail(match e.kind() {
                        io::ErrorKind::AddrInUse => {
                            "the address is in use (choose another port: --gdb HOST:PORT)".into()
                        }
                        _ => e.to_string(),
                    })
                })?;
                let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
                Ok(Listener { socket: listener.into(), addr: Addr::Tcp(bound), unix_path: None })
            }
            Addr::Unix(path) => {
                if path.symlink_metadata().is_ok() {
                    return Err(fail("the path exists (remove it or choose another)".into()));
                }
                let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
                Ok(Listener { socket: listener.into(), addr: addr.clone(), unix_path: Some(path.clone()) })
            }
        }
    }

    /// Waits for GDB to connect; `None` when `stop` is set first (checked every 100 ms).
    pub fn accept(&self, stop: &Arc<AtomicBool>) -> io::Result<Option<Conn>> {
        let fd = self.socket.as_raw_fd();
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(None);
            }
            let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, its length 1.
            let ready = unsafe { libc::poll(&mut poll, 1, Duration::from_millis(100).as_millis() as i32) };
            if ready <= 0 {
                continue; // timeout, or EINTR from the kick signal: check `stop` again
            }
            // SAFETY: accepting on a listening socket we own; no address is asked for.
            let client = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if client < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR | libc::EAGAIN | libc::ECONNABORTED) => continue,
                    _ => return Err(e),
                }
            }
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(client) };
            if matches!(self.addr, Addr::Tcp(_)) {
                let one: libc::c_int = 1;
                // SAFETY: a valid socket and an int option of the right size. GDB sends small
                // packets and waits for each answer: Nagle's delay would slow every step.
                unsafe {
                    libc::setsockopt(
                        client,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&one as *const libc::c_int).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
            }
            return Ok(Some(Conn { socket, stop: stop.clone() }));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The connection to GDB.
pub struct Conn {
    socket: OwnedFd,
    /// The run's stop flag: set when lde is stopping, and a read interrupted then gives up.
    stop: Arc<AtomicBool>,
}

impl Connection for Conn {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.write_all(&[byte])
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            // SAFETY: `buf` is valid for its length; MSG_NOSIGNAL turns a closed peer into
            // EPIPE instead of SIGPIPE.
            let n = unsafe { libc::send(self.socket.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted && !self.stop.load(Ordering::Acquire) {
                    continue;
                }
                return Err(e);
            }
            buf = &buf[n as usize..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    fn recv(&self, flags: libc::c_int) -> io::Result<Option<u8>> {
        let mut byte = 0u8;
        loop {
            // SAFETY: one writable byte.
            let n = unsafe { libc::recv(self.socket.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, flags) };
            match n {
                1 => return Ok(Some(byte)),
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "GDB closed the connection")),
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(None),
                        io::ErrorKind::Interrupted if !self.stop.load(Ordering::Acquire) => continue,
                        _ => return Err(e),
                    }
                }
            }
        }
    }
}

impl ConnectionExt for Conn {
    fn read(&mut self) -> io::Result<u8> {
        self.recv(0)?.ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        self.recv(libc::MSG_PEEK | libc::MSG_DONTWAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_expected() {
        assert_eq!("127.0.0.1:1234".parse::<Addr>(), Ok(Addr::Tcp("127.0.0.1:1234".parse().unwrap())));
        assert_eq!("[::1]:9".parse::<Addr>(), Ok(Addr::Tcp("[::1]:9".parse().unwrap())));
        assert_eq!("./gdb.sock".parse::<Addr>(), Ok(Addr::Unix(PathBuf::from("./gdb.sock"))));
        let bad = "localhost:1234".parse::<Addr>().unwrap_err();
        assert!(bad.contains("neither IP:PORT"), "{bad}");
        assert!("1234".parse::<Addr>().is_err());
    }

    #[test]
    fn a_port_in_use_and_an_existing_path_are_refused() {
        let first = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let Addr::Tcp(bound) = first.addr else { panic!("tcp") };
        assert_ne!(bound.port(), 0);
        let again = Listener::bind(&first.addr).err().unwrap().to_string();
        assert!(again.contains("the address is in use"), "{again}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gdb.sock");
        let unix = Listener::bind(&Addr::Unix(path.clone())).unwrap();
        assert!(Listener::bind(&Addr::Unix(path.clone())).err().unwrap().to_string().contains("the path exists"));
        drop(unix);
        assert!(!path.exists(), "the socket file is removed with the listener");
    }
}
