//! The 16550 UART at COM1: the kernel's console.
//!
//! Every port access is a VM exit (13–15 µs on PVM hosts), so the driver polls LSR only when
//! the 16-byte transmit FIFO may be full: when LSR says "transmitter holding register empty",
//! the FIFO is empty and 16 bytes may follow without another look.

use core::sync::atomic::{AtomicU32, Ordering};

use lde_abi::ports::SERIAL_PORT;
use x86_64::instructions::port::Port;

const DATA: u16 = 0; // THR/RBR, or divisor low with DLAB
const INT_ENABLE: u16 = 1; // IER, or divisor high with DLAB
const FIFO_CONTROL: u16 = 2; // FCR
const LINE_CONTROL: u16 = 3; // LCR
const MODEM_CONTROL: u16 = 4; // MCR
const LINE_STATUS: u16 = 5; // LSR

const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// IER bit: interrupt when received data is available.
const IER_RX_AVAILABLE: u8 = 1 << 0;
const FIFO_SIZE: u32 = 16;

/// Bytes that may still be written before LSR must be read again.
static FIFO_BUDGET: AtomicU32 = AtomicU32::new(0);

fn outb(offset: u16, value: u8) {
    // SAFETY: COM1's registers; writes there only affect the UART.
    unsafe { Port::<u8>::new(SERIAL_PORT + offset).write(value) }
}

fn inb(offset: u16) -> u8 {
    // SAFETY: reading the UART's registers has no effect on memory.
    unsafe { Port::<u8>::new(SERIAL_PORT + offset).read() }
}

/// Programs 115200 8N1 with FIFOs on and UART interrupts off.
pub fn init() {
    outb(INT_ENABLE, 0x00);
    outb(LINE_CONTROL, 0x80); // DLAB
    outb(DATA, 0x01); // divisor 1: 115200 baud
    outb(INT_ENABLE, 0x00);
    outb(LINE_CONTROL, 0x03); // 8N1
    outb(FIFO_CONTROL, 0xc7); // enable and clear FIFOs
    outb(MODEM_CONTROL, 0x0b); // DTR, RTS, OUT2
}

/// Enables the "received data available" interrupt (IRQ 4).
pub fn enable_rx_interrupt() {
    outb(INT_ENABLE, IER_RX_AVAILABLE);
}

/// The next received byte, if the UART holds one.
pub fn read_byte() -> Option<u8> {
    (inb(LINE_STATUS) & LSR_DATA_READY != 0).then(|| inb(DATA))
}

/// Writes bytes, turning `\n` into `\r\n`.
///
/// Lock-free: a trap handler that prints while another print is under way interleaves its
/// bytes but cannot deadlock.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put(b'\r');
        }
        put(b);
    }
}

fn put(byte: u8) {
    if FIFO_BUDGET.load(Ordering::Relaxed) == 0 {
        while inb(LINE_STATUS) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        FIFO_BUDGET.store(FIFO_SIZE, Ordering::Relaxed);
    }
    FIFO_BUDGET.fetch_sub(1, Ordering::Relaxed);
    outb(DATA, byte);
}
