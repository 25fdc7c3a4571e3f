//! The console: `print!`/`println!` and the processes' `write`, through one page of output.
//!
//! Under lde the page goes to the host with one `out` to the console port per line (or per
//! `write`) — one VM exit where the UART costs one a byte (`lde_abi::ports::CONSOLE_PORT`). Where
//! no console port answers (QEMU), and before [`init`], bytes go to the UART. A print that
//! interrupts another one (a fault inside this code, which is fatal anyway) also writes straight
//! to the UART, so that it is seen.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use lde_abi::ports::{console_doorbell, CONSOLE_CHUNK, CONSOLE_MAGIC, CONSOLE_PORT};
use x86_64::instructions::port::Port;

use lde_kcore::decimal;

use crate::arch::{mem, serial};

/// The page of output waiting for the next doorbell.
#[repr(C, align(4096))]
struct Page {
    bytes: [u8; CONSOLE_CHUNK],
    len: usize,
}

struct Buffer(UnsafeCell<Page>);

// SAFETY: the page is touched only by whoever set BUSY (an atomic swap, see `with_page`), with
// interrupts off in the kernel; with several processors only the big kernel lock's holder
// prints, and a print that finds BUSY set goes to the UART instead.
unsafe impl Sync for Buffer {}

static BUFFER: Buffer = Buffer(UnsafeCell::new(Page { bytes: [0; CONSOLE_CHUNK], len: 0 }));
/// Whether the console port answered.
static PORT: AtomicBool = AtomicBool::new(false);
/// Whether someone is filling or flushing the page.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Whether the last byte written was a newline (or nothing was written yet).
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

/// Uses the console port if lde serves it (one VM exit, at boot); returns whether it does.
pub fn init() -> bool {
    // SAFETY: reading an I/O port has no effect on memory; nothing (QEMU) reads all ones.
    let answer = unsafe { Port::<u32>::new(CONSOLE_PORT).read() };
    PORT.store(answer == CONSOLE_MAGIC, Ordering::Relaxed);
    answer == CONSOLE_MAGIC
}

/// Runs `f` with the page, or returns false if it is in use or there is no console port.
fn with_page(f: impl FnOnce(&mut Page)) -> bool {
    if !PORT.load(Ordering::Relaxed) || BUSY.swap(true, Ordering::Acquire) {
        return false;
    }
    // SAFETY: BUSY was clear and is now set: no other reference to the page exists.
    f(unsafe { &mut *BUFFER.0.get() });
    BUSY.store(false, Ordering::Release);
    true
}

/// Hands the page's bytes to the host.
fn ring(page: &mut Page) {
    if page.len != 0 {
        let doorbell = console_doorbell(page.bytes.as_ptr() as u32, page.len);
        // SAFETY: the kernel's statics are identity-mapped below 4 GiB, so the page's address
        // is its guest-physical address; lde only reads it.
        unsafe { Port::<u32>::new(CONSOLE_PORT).write(doorbell) };
        page.len = 0;
    }
}

/// Writes `bytes` (sent on the next [`flush`], or when the page is full).
pub fn write(bytes: &[u8]) {
    let buffered = with_page(|page| {
        let mut rest = bytes;
        while !rest.is_empty() {
            if page.len == CONSOLE_CHUNK {
                ring(page);
            }
            let n = rest.len().min(CONSOLE_CHUNK - page.len);
            page.bytes[page.len..page.len + n].copy_from_slice(&rest[..n]);
            page.len += n;
            rest = &rest[n..];
        }
    });
    if !buffered {
        serial::write_bytes(bytes);
    }
    if let Some(&last) = bytes.last() {
        AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
    }
}

/// Sends what [`write`] buffered.
pub fn flush() {
    with_page(ring);
}

/// Ends a line that a process (or the kernel) left unfinished, so that what follows starts on
/// a line of its own.
pub fn start_line() {
    if !AT_LINE_START.load(Ordering::Relaxed) {
        write(b"\n");
    }
}

/// A line assembled on the stack and handed to the console whole: the kernel's fixed lines use
/// it rather than `core::fmt`, whose machinery costs a few hundred emulated instructions a line
/// more. Where ring 0 is emulated every instruction here is counted at every boot, so a piece
/// is one `rep movs` copy (`mem::copy`: one emulated instruction however long), the buffer is
/// not zeroed, and numbers are written in place (`lde_kcore::decimal`).
pub struct Line {
    buf: [MaybeUninit<u8>; LINE_MAX],
    /// `buf[..len]` is written.
    len: usize,
}

const LINE_MAX: usize = 256;

impl Line {
    pub fn new() -> Line {
        Line { buf: [const { MaybeUninit::uninit() }; LINE_MAX], len: 0 }
    }

    /// The bytes written so far.
    fn written(&self) -> &[u8] {
        // SAFETY: `buf[..len]` is initialized (every writer writes before it moves `len`).
        unsafe { core::slice::from_raw_parts(self.buf.as_ptr().cast(), self.len) }
    }

    /// Room for `n` more bytes: sends what the line holds if they would not fit, and returns
    /// whether they fit now.
    fn room(&mut self, n: usize) -> bool {
        if self.len + n > LINE_MAX {
            write(self.written());
            self.len = 0;
        }
        n <= LINE_MAX
    }

    /// Appends bytes (a line longer than the buffer goes out in pieces).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Line {
        if !self.room(bytes.len()) {
            write(bytes);
            return self;
        }
        // SAFETY: `room` made `len + bytes.len() <= LINE_MAX`; the buffer is this line's own
        // and `bytes` is borrowed elsewhere, so the ranges do not overlap.
        unsafe { mem::copy(self.buf.as_mut_ptr().add(self.len).cast(), bytes.as_ptr(), bytes.len()) };
        self.len += bytes.len();
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Line {
        self.bytes(s.as_bytes())
    }

    /// Appends `n` in decimal, at least `width` digits (zeros in front).
    fn digits(&mut self, n: u64, width: usize) -> &mut Line {
        let count = decimal::len(n, width).min(LINE_MAX);
        self.room(count);
        decimal::write(n, &mut self.buf[self.len..self.len + count]);
        self.len += count;
        self
    }

    /// Appends `n` in decimal.
    pub fn dec(&mut self, n: u64) -> &mut Line {
        self.digits(n, 1)
    }

    /// Appends `n` thousandths as a decimal number with three places (`2596122` as `2596.122`).
    pub fn thousandths(&mut self, n: u64) -> &mut Line {
        self.digits(n / 1000, 1).str(".").digits(n % 1000, 3)
    }

    /// Appends `n` in hexadecimal with a `0x` prefix, as `{:#x}` does.
    pub fn hex(&mut self, n: u64) -> &mut Line {
        let mut digits = [0u8; 18];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        i -= 2;
        digits[i..i + 2].copy_from_slice(b"0x");
        self.bytes(&digits[i..])
    }

    /// Appends bytes as text, anything that is not printable ASCII as `?`.
    pub fn ascii(&mut self, bytes: &[u8]) -> &mut Line {
        let printable = |b: &u8| (0x20..0x7f).contains(b);
        if bytes.iter().all(printable) {
            // The common case (a CPU vendor, a hypervisor's signature): one copy, not one per
            // byte (~25 emulated instructions each where ring 0 is emulated).
            return self.bytes(bytes);
        }
        for b in bytes {
            self.bytes(&[if printable(b) { *b } else { b'?' }]);
        }
        self
    }

    /// Ends the line and sends it.
    pub fn end(&mut self) {
        self.bytes(b"\n");
        write(self.written());
        flush();
        self.len = 0;
    }
}

/// A `fmt::Write` sink on the console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}

/// Prints to the console (sent with the next line).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::console::Console, format_args!($($arg)*));
    }};
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => {{
        $crate::console::write(b"\n");
        $crate::console::flush();
    }};
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::console::write(b"\n");
        $crate::console::flush();
    }};
}
