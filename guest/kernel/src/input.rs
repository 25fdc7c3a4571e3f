//! Serial input: bytes the UART received, kept until a process reads them, and whether input
//! has ended (lde's input-status port).

use lde_abi::ports::{INPUT_ENDED, INPUT_STATUS_PORT, SERIAL_IRQ};
use x86_64::instructions::port::Port;

use crate::arch::vectors::SERIAL_VECTOR;
use crate::arch::{ioapic, lapic, serial};
use crate::process::KERNEL;
use crate::sched;
use crate::sync::Global;

const CAPACITY: usize = 1024;

struct Input {
    buf: [u8; CAPACITY],
    head: usize,
    len: usize,
    ended: bool,
}

static INPUT: Global<Input> = Global::new(Input { buf: [0; CAPACITY], head: 0, len: 0, ended: false });

/// Takes `lde.input=none` from the command line (`none`): input has ended before it began.
pub fn init(none: bool) {
    if none {
        INPUT.with(|inp| inp.ended = true);
    }
}

/// Moves what the UART holds into the buffer (as much as fits; the rest waits in the UART,
/// whose full FIFO holds back the VMM). Returns whether anything new is available, input ended
/// included.
pub fn drain_uart() -> bool {
    INPUT.with(drain_into)
}

fn drain_into(inp: &mut Input) -> bool {
    let mut got = false;
    while inp.len < CAPACITY {
        let Some(b) = serial::read_byte() else { break };
        inp.buf[(inp.head + inp.len) % CAPACITY] = b;
        inp.len += 1;
        got = true;
    }
    if inp.len == 0 && !inp.ended && input_ended() {
        inp.ended = true;
        got = true;
    }
    got
}

fn input_ended() -> bool {
    // SAFETY: reading the input-status port has no side effects (QEMU: floating bus).
    let status: u8 = unsafe { Port::new(INPUT_STATUS_PORT).read() };
    status == INPUT_ENDED
}

/// What a `read` finds now.
pub enum Available {
    /// Some bytes were copied.
    Bytes(usize),
    /// Input has ended.
    End,
    /// Nothing yet: block.
    Nothing,
}

/// Copies buffered input into `out` (the caller has checked it is writable user memory).
pub fn take(out: &mut [u8]) -> Available {
    INPUT.with(|inp| {
        drain_into(inp);
        if inp.len == 0 {
            return if inp.ended { Available::End } else { Available::Nothing };
        }
        let n = out.len().min(inp.len);
        for b in out.iter_mut().take(n) {
            *b = inp.buf[inp.head];
            inp.head = (inp.head + 1) % CAPACITY;
        }
        inp.len -= n;
        Available::Bytes(n)
    })
}

/// Masks every I/O APIC input, routes the UART's IRQ 4 to [`SERIAL_VECTOR`] and enables its
/// "data received" interrupt. (The disks' inputs are routed after it, by `disk::probe`.)
pub fn enable_interrupt() {
    ioapic::mask_all();
    ioapic::route(SERIAL_IRQ, SERIAL_VECTOR);
    serial::enable_rx_interrupt();
}

/// The UART's interrupt: take its bytes and wake readers.
pub fn serial_interrupt() {
    if drain_uart() {
        KERNEL.with(sched::wake_readers);
    }
    lapic::eoi();
}
