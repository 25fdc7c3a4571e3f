//! COM1: vm-superio's 16550 model, its interrupt line as an irqfd, and the console sink that
//! forwards guest output and notes when the kernel's banner appears.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use std::os::fd::{AsRawFd, RawFd};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::lock_serial;

/// The start of the line the kernel prints once booted.
pub const BANNER_PREFIX: &[u8] = b"lde kernel ";

/// Raises the UART's interrupt line through an eventfd registered as a KVM irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Tells the input side when the guest has emptied the receive FIFO, so more can be sent.
pub struct InputEvents {
    pub drained: EventFd,
}

impl SerialEvents for InputEvents {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Err(e) = self.drained.write(1) {
            log::warn!("cannot signal the serial input side: {e}");
        }
    }
}

/// The 16550 UART model with its sink.
pub type SerialDevice = Serial<IrqTrigger, InputEvents, Console>;

/// Creates COM1 with its interrupt eventfd (to register as an irqfd) and its sink.
pub fn new_serial(out: Box<dyn Write + Send>) -> io::Result<SerialDevice> {
    let irq = EventFd::new(libc::EFD_NONBLOCK)?;
    let drained = EventFd::new(libc::EFD_NONBLOCK)?;
    Ok(Serial::with_events(IrqTrigger(irq), InputEvents { drained }, Console::new(out)))
}

/// Forwards lde's standard input to the UART's receive FIFO.
///
/// Bytes are taken from stdin only as fast as the FIFO has room; while it is full, stdin is not
/// watched, and the guest draining the FIFO (the `drained` eventfd) resumes it. Nothing is lost.
///
/// A regular file (or /dev/null) cannot be watched with epoll, and never needs to be: it is
/// read directly whenever the FIFO has room (at the start, and each time the guest drains it).
/// Input that can be neither watched nor read is given up with one warning.
///
/// When the input ends and every byte is in the UART, [`InputStatus`] says so and the UART's
/// interrupt line is pulsed, so that a reader blocked in the guest wakes to see the end.
pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    input: RawFd,
    drained: RawFd,
    pending: Vec<u8>,
    watching_input: bool,
    /// The input is read whenever there is room, without epoll (regular files, /dev/null).
    direct: bool,
    eof: bool,
    status: InputStatus,
}

/// Whether lde's input has ended (read by the guest through the input-status port).
#[derive(Clone, Debug, Default)]
pub struct InputStatus(Arc<std::sync::atomic::AtomicBool>);

impl InputStatus {
    /// Whether every byte of input has been handed to the UART and no more will come.
    pub fn ended(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Says that input has ended (the serial input's end; the exit handler's tests).
    pub(crate) fn set_ended(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl SerialInput {
    /// Reads from `input` (normally fd 0), which must stay open while the event loop runs.
    pub fn new(serial: Arc<Mutex<SerialDevice>>, input: RawFd, status: InputStatus) -> Self {
        let drained = lock_serial(&serial).events().drained.as_raw_fd();
        Self { serial, input, drained, pending: Vec::new(), watching_input: false, direct: false, eof: false, status }
    }

    /// Once input has ended and nothing is pending, says so and wakes the guest.
    fn signal_end(&mut self) {
        if self.eof && self.pending.is_empty() && !self.status.ended() {
            self.status.set_ended();
            let serial = lock_serial(&self.serial);
            if let Err(e) = serial.interrupt_evt().trigger() {
                log::warn!("cannot raise the serial interrupt: {e}");
            }
        }
    }

    /// Moves pending bytes into the FIFO; returns whether all of them fit.
    fn push_pending(&mut self) -> bool {
        let mut serial = lock_serial(&self.serial);
        match serial.enqueue_raw_bytes(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) => log::warn!("serial input: {e:?}"),
        }
        self.pending.is_empty()
    }

    fn read_input(&mut self) {
        let room = lock_serial(&self.serial).fifo_capacity();
        if room == 0 {
            return;
        }
        let mut buf = vec![0u8; room];
        // SAFETY: buf is valid for `room` bytes; `input` is an open fd (constructor's contract).
        let n = unsafe { libc::read(self.input, buf.as_mut_ptr().cast(), room) };
        match n {
            0 => self.eof = true,
            n if n > 0 => {
                buf.truncate(n as usize);
                self.pending.extend_from_slice(&buf);
            }
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted && e.kind() != io::ErrorKind::WouldBlock {
                    log::warn!("cannot read standard input ({e}); no more input goes to the guest");
                    self.eof = true;
                }
            }
        }
    }

    /// Watches stdin only while there is room for what it brings; reads it at once if it is
    /// read directly.
    fn update_watch(&mut self, ops: &mut EventOps) {
        let want = !self.eof && self.pending.is_empty();
        if self.direct {
            if want {
                self.read_input();
                self.push_pending();
            }
            return;
        }
        if want != self.watching_input {
            let events = Events::new_raw(self.input, EventSet::IN);
            let result = if want { ops.add(events) } else { ops.remove(events) };
            match result {
                Ok(()) => self.watching_input = want,
                // epoll refuses files that are always ready: read those directly.
                Err(event_manager::Error::Epoll(e)) if want && e.errno() == libc::EPERM => {
                    self.direct = true;
                    self.update_watch(ops);
                }
                Err(e) => {
                    log::warn!("standard input cannot be forwarded to the guest: {e}");
                    self.eof = true;
                    self.watching_input = false;
                }
            }
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.drained, EventSet::IN)) {
            log::warn!("serial input: {e:?}");
        }
        self.update_watch(ops);
        self.signal_end();
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained {
            let mut buf = [0u8; 8];
            // SAFETY: reads 8 bytes into an 8-byte buffer from our own eventfd (non-blocking).
            unsafe { libc::read(self.drained, buf.as_mut_ptr().cast(), 8) };
        } else if events.event_set().intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            self.read_input();
        }
        self.push_pending();
        self.update_watch(ops);
        self.signal_end();
    }
}

/// Where guest serial output goes: written through unbuffered (each byte already cost the guest
/// a VM exit, far more than the write), with the time the banner line began noted.
pub struct Console {
    out: Box<dyn Write + Send>,
    at_line_start: bool,
    line_prefix: Vec<u8>,
    banner_at: Option<Instant>,
    bytes: u64,
}

impl Console {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out, at_line_start: true, line_prefix: Vec::new(), banner_at: None, bytes: 0 }
    }

    /// When the kernel's banner line started, if it has.
    pub fn banner_at(&self) -> Option<Instant> {
        self.banner_at
    }

    /// Bytes the guest has written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn note(&mut self, byte: u8) {
        self.bytes += 1;
        if byte == b'\n' {
            self.at_line_start = true;
            self.line_prefix.clear();
            return;
        }
        if self.banner_at.is_none() && self.at_line_start {
            self.line_prefix.push(byte);
            if !BANNER_PREFIX.starts_with(&self.line_prefix) {
                self.at_line_start = false;
            } else if self.line_prefix.len() == BANNER_PREFIX.len() {
                self.banner_at = Some(Instant::now());
                self.at_line_start = false;
            }
        }
    }
}

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        buf.iter().for_each(|&b| self.note(b));
        // A closed stdout (`lde run | head`) stops the run (see `stdio`); the bytes are dropped.
        match self.out.write_all(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                crate::stdio::note(&e);
                Ok(buf.len())
            }
            r => r.map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                crate::stdio::note(&e);
                Ok(())
            }
            r => r,
        }
    }
}

/// A `Write` into a shared buffer, for tests and for capturing a transcript.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("buffer lock poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_bytes_reach_the_receive_fifo() {
        let (read_end, write_end) = {
            let mut fds = [0; 2];
            // SAFETY: fds has room for the two descriptors pipe() writes.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: writes 4 bytes from a 4-byte buffer to the pipe we just made.
        assert_eq!(unsafe { libc::write(write_end, b"ab\nc".as_ptr().cast(), 4) }, 4);
        let serial = Arc::new(Mutex::new(new_serial(Box::new(SharedBuffer::default())).unwrap()));
        let status = InputStatus::default();
        let mut input = SerialInput::new(serial.clone(), read_end, status.clone());
        input.read_input();
        assert!(input.push_pending());
        input.signal_end();
        assert!(!status.ended(), "the pipe is still open");
        let got: Vec<u8> = (0..4).map(|_| serial.lock().unwrap().read(0)).collect();
        assert_eq!(got, b"ab\nc");
        // The writer goes away: the next read sees the end, and the input-status port says so.
        // SAFETY: closing the write end this test opened.
        unsafe { libc::close(write_end) };
        input.read_input();
        input.signal_end();
        assert!(status.ended(), "every byte handed over, and no more to come");
        // SAFETY: closing the read end this test opened.
        unsafe { libc::close(read_end) };
    }

    #[test]
    fn notes_the_banner_only_at_a_line_start() {
        let buf = SharedBuffer::default();
        let mut console = Console::new(Box::new(buf.clone()));
        console.write_all(b"boot: not lde kernel here\n").unwrap();
        assert!(console.banner_at().is_none());
        console.write_all(b"lde ker").unwrap();
        assert!(console.banner_at().is_none());
        console.write_all(b"nel 0.1.0: up\n").unwrap();
        assert!(console.banner_at().is_some());
        assert_eq!(&*buf.0.lock().unwrap(), b"boot: not lde kernel here\nlde kernel 0.1.0: up\n");
        assert_eq!(console.bytes(), 47);
    }
}
