//! The signals that would end lde, as a file descriptor the event loop can wait on.
//!
//! Every catchable signal whose default action ends the process (SIGINT, SIGTERM, SIGHUP,
//! SIGQUIT, SIGUSR1, SIGALRM, …) is blocked and read from a signalfd instead, so that each one
//! stops the guest cleanly: the terminal restored, the API socket removed, the report written.
//! Not among them: SIGPIPE (Rust ignores it; a closed pipe is a write error, see `output`), the
//! signals of a faulting instruction (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGABRT)
//! and lde's own vCPU kick (`SIGRTMIN`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vmm_sys_util::signal::{SIGRTMAX, SIGRTMIN};

/// The signals lde reads from its signalfd.
pub(crate) fn terminating() -> Vec<libc::c_int> {
    let mut signals = vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
        libc::SIGXCPU,
        libc::SIGXFSZ,
    ];
    // The real-time signals end a process by default too; the first is the vCPU kick.
    signals.extend(SIGRTMIN() + 1..=SIGRTMAX());
    signals
}

/// A signalfd for signals blocked in this thread (and so in the threads it creates).
///
/// They stay blocked for the rest of the process, also after the signalfd is dropped: a signal
/// that arrives between two runs (`lde bench` boots several) is read by the next run, and one
/// that arrives after the last run (while the report is written) is discarded at exit instead
/// of ending lde before it has cleaned up.
pub(crate) struct SignalFd {
    fd: OwnedFd,
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl SignalFd {
    /// Blocks `signals` in the calling thread and reads them from a new signalfd.
    pub(crate) fn new(signals: &[libc::c_int]) -> io::Result<Self> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t for these libc calls; the signals are valid numbers.
        unsafe {
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: creates a new fd from a valid sigset; the result is checked below.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by signalfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// The number of the next pending signal, if any.
    pub(crate) fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which is `size` bytes long.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

/// A signal's name, for the line that says a run was stopped.
pub fn name(signal: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
    ];
    match known.iter().find(|(n, _)| *n == signal) {
        Some((_, name)) => name.to_string(),
        None if (SIGRTMIN()..=SIGRTMAX()).contains(&signal) => format!("SIGRTMIN+{}", signal - SIGRTMIN()),
        None => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kick_is_not_among_the_stop_signals() {
        let signals = terminating();
        assert!(!signals.contains(&SIGRTMIN()));
        assert!(signals.contains(&libc::SIGQUIT) && signals.contains(&SIGRTMAX()));
        assert!(!signals.contains(&libc::SIGPIPE) && !signals.contains(&libc::SIGSYS));
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
        assert_eq!(name(SIGRTMIN() + 2), "SIGRTMIN+2");
    }
}
