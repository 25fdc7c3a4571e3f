//! The console port: the kernel hands lde a page of output with one `out` (one VM exit a line
//! or a `write`) instead of one `out` a byte to the UART. lde copies the bytes out of guest
//! memory and gives them to the same console sink as the UART's, with each `\n` as `\r\n`, so
//! the output is byte for byte what the UART would have carried. Protocol:
//! `lde_abi::ports::CONSOLE_PORT`.

use std::io::Write;

use lde_abi::ports::{console_chunk, CONSOLE_MAGIC};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::SerialDevice;

/// The console port; it reads guest memory.
pub struct ConsolePort {
    mem: GuestMemoryMmap,
    /// Reused for each chunk (at most a page, plus a `\r` per `\n`).
    scratch: Vec<u8>,
}

impl ConsolePort {
    pub fn new(mem: GuestMemoryMmap) -> Self {
        Self { mem, scratch: Vec::with_capacity(2 * lde_abi::ports::CONSOLE_CHUNK) }
    }

    /// What an `in` of `data.len()` bytes reads: the magic (a 32-bit read), else all ones.
    pub fn read(&self, data: &mut [u8]) {
        match data.len() {
            4 => data.copy_from_slice(&CONSOLE_MAGIC.to_le_bytes()),
            _ => data.fill(0xff),
        }
    }

    /// Handles an `out` of `data`: a doorbell naming bytes in guest memory, written to the
    /// serial device's console sink. A bad doorbell (not 32 bits, or outside guest memory) is
    /// the guest's mistake: logged and dropped.
    pub fn write(&mut self, data: &[u8], serial: &mut SerialDevice) {
        let Ok(word) = <[u8; 4]>::try_from(data) else {
            log::warn!("console port: ignored a {}-byte write (the doorbell is 32 bits)", data.len());
            return;
        };
        let (page, len) = console_chunk(u32::from_le_bytes(word));
        let mut bytes = [0u8; lde_abi::ports::CONSOLE_CHUNK];
        if let Err(e) = self.mem.read_slice(&mut bytes[..len], GuestAddress(u64::from(page))) {
            log::warn!("console port: {len} bytes at {page:#x} are not guest memory: {e}");
            return;
        }
        log::trace!("console port: {len} bytes at {page:#x}");
        self.scratch.clear();
        for &b in &bytes[..len] {
            if b == b'\n' {
                self.scratch.push(b'\r');
            }
            self.scratch.push(b);
        }
        // The sink cannot fail (a closed stdout is noted there and the bytes dropped).
        if let Err(e) = serial.writer_mut().write_all(&self.scratch) {
            log::warn!("console output failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::serial::{new_serial, SharedBuffer};
    use lde_abi::ports::console_doorbell;

    fn setup() -> (ConsolePort, SerialDevice, SharedBuffer, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let out = SharedBuffer::default();
        let serial = new_serial(Box::new(out.clone())).unwrap();
        (ConsolePort::new(mem.clone()), serial, out, mem)
    }

    #[test]
    fn a_doorbell_writes_the_page_as_the_uart_would() {
        let (mut port, mut serial, out, mem) = setup();
        mem.write_slice(b"one\ntwo\r\nx", GuestAddress(0x5000)).unwrap();
        port.write(&console_doorbell(0x5000, 9).to_le_bytes(), &mut serial);
        assert_eq!(&*out.0.lock().unwrap(), b"one\r\ntwo\r\r\n");
        assert_eq!(serial.writer().bytes(), 11);
    }

    #[test]
    fn a_whole_page_and_bad_doorbells() {
        let (mut port, mut serial, out, mem) = setup();
        mem.write_slice(&[b'a'; 4096], GuestAddress(0x7000)).unwrap();
        port.write(&console_doorbell(0x7000, 4096).to_le_bytes(), &mut serial);
        assert_eq!(out.0.lock().unwrap().len(), 4096);
        // Outside guest memory, across its end, or not 32 bits: nothing is written, nothing
        // panics.
        port.write(&console_doorbell(0xfff0_0000, 16).to_le_bytes(), &mut serial);
        port.write(&(console_doorbell(0xf_f000, 4096) + 0x1000).to_le_bytes(), &mut serial);
        port.write(&[1], &mut serial);
        assert_eq!(out.0.lock().unwrap().len(), 4096);
        // The last page is whole.
        port.write(&console_doorbell(0xf_f000, 4096).to_le_bytes(), &mut serial);
        assert_eq!(out.0.lock().unwrap().len(), 2 * 4096);
    }

    #[test]
    fn reads_say_lde_serves_the_port() {
        let (port, ..) = setup();
        let mut word = [0u8; 4];
        port.read(&mut word);
        assert_eq!(u32::from_le_bytes(word), CONSOLE_MAGIC);
        let mut byte = [0u8; 1];
        port.read(&mut byte);
        assert_eq!(byte, [0xff]);
    }
}
