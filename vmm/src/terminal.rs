//! Character-at-a-time input when standard input is a terminal: canonical mode and echo off
//! (the guest echoes what it reads), signals kept (Ctrl-C still stops lde). The previous
//! settings come back when the guard drops, on every way out of a run, and from
//! [`restore_in_signal_handler`] when lde must end at once (a forbidden system call).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A terminal and the settings it had before lde changed them.
struct Saved {
    fd: RawFd,
    termios: libc::termios,
}

/// The terminal in raw mode, if any, for [`restore_in_signal_handler`]. Each one is leaked (a
/// few dozen bytes per run) so that a handler can never see it freed.
static IN_RAW_MODE: AtomicPtr<Saved> = AtomicPtr::new(std::ptr::null_mut());

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Switches `fd` to character-at-a-time input if it is a terminal; `None` if it is not.
    pub fn enable(fd: RawFd) -> Option<RawMode> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        IN_RAW_MODE.store(Box::into_raw(Box::new(Saved { fd, termios: saved })), Ordering::Release);
        // SAFETY: applying a termios derived from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            IN_RAW_MODE.store(std::ptr::null_mut(), Ordering::Release);
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        IN_RAW_MODE.store(std::ptr::null_mut(), Ordering::Release);
        // SAFETY: restoring the settings read from this terminal in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Restores the terminal a [`RawMode`] changed, if one is in force. Async-signal-safe: an
/// atomic load and `tcsetattr`.
pub fn restore_in_signal_handler() {
    let saved = IN_RAW_MODE.load(Ordering::Acquire);
    if !saved.is_null() {
        // SAFETY: a non-null pointer here came from Box::into_raw in `enable` and is never
        // freed; tcsetattr is async-signal-safe.
        unsafe { libc::tcsetattr((*saved).fd, libc::TCSANOW, &(*saved).termios) };
    }
}
