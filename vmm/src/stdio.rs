//! lde's own lines on stdout and stderr, safe when their reader goes away.
//!
//! std's `println!` and `eprintln!` panic when the write fails, and a write to a pipe whose
//! reader has gone (`lde probe | head -1`) fails with `EPIPE` (Rust ignores SIGPIPE, so the
//! process is not killed by it). lde's crates replace both macros (and `print!`, `eprint!`) with
//! ones that call [`print`]: a failed write is dropped, and a broken pipe is noted as
//! [`closed`]. A run stops when its output is closed (the event loop watches [`closed_event`])
//! and lde then exits [`lde_abi::exit_code::OUTPUT_CLOSED`] (141, as a shell reports a process killed
//! by SIGPIPE), without a message: a tool whose reader went away stops quietly.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use vmm_sys_util::eventfd::EventFd;

/// Set once a write to stdout or stderr (or the guest's console) found its reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Readable once [`CLOSED`] is set, for an event loop to wake on.
static CLOSED_EVENT: OnceLock<Option<EventFd>> = OnceLock::new();

/// Where a line goes.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Writes formatted text to `stream`, whole; a failed write is dropped (see the module docs).
pub fn print(stream: Stream, args: fmt::Arguments) {
    let result = match stream {
        Stream::Stdout => io::stdout().lock().write_fmt(args).and_then(|()| io::stdout().flush()),
        Stream::Stderr => io::stderr().lock().write_fmt(args),
    };
    if let Err(e) = result {
        note(&e);
    }
}

/// Notes `e` if it says the reader went away.
pub fn note(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe && !CLOSED.swap(true, Ordering::AcqRel) {
        if let Some(event) = event() {
            let _ = event.write(1);
        }
    }
}

/// Whether an output's reader went away.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Acquire)
}

fn event() -> Option<&'static EventFd> {
    CLOSED_EVENT.get_or_init(|| EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).ok()).as_ref()
}

/// An fd that becomes readable when an output is closed; `None` if no eventfd could be made.
pub fn closed_event() -> Option<RawFd> {
    let fd = event()?.as_raw_fd();
    if closed() {
        // Closed before anyone watched: make sure the watcher wakes.
        let _ = event()?.write(1);
    }
    Some(fd)
}

/// `println!` without the panic (see the module docs).
#[macro_export]
macro_rules! lde_println {
    () => { $crate::stdio::print($crate::stdio::Stream::Stdout, format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::stdio::print($crate::stdio::Stream::Stdout, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` without the panic.
#[macro_export]
macro_rules! lde_print {
    ($($arg:tt)*) => { $crate::stdio::print($crate::stdio::Stream::Stdout, format_args!($($arg)*)) };
}

/// `eprintln!` without the panic.
#[macro_export]
macro_rules! lde_eprintln {
    () => { $crate::stdio::print($crate::stdio::Stream::Stderr, format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::stdio::print($crate::stdio::Stream::Stderr, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` without the panic.
#[macro_export]
macro_rules! lde_eprint {
    ($($arg:tt)*) => { $crate::stdio::print($crate::stdio::Stream::Stderr, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_counts_as_closed() {
        note(&io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!closed());
        let fd = closed_event().expect("an eventfd");
        note(&io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed());
        let mut count = [0u8; 8];
        // SAFETY: reads 8 bytes into an 8-byte buffer from the module's own eventfd.
        assert_eq!(unsafe { libc::read(fd, count.as_mut_ptr().cast(), 8) }, 8);
        assert_eq!(u64::from_ne_bytes(count), 1);
    }
}
