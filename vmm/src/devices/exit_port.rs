//! The exit port: a 32-bit write of an exit code ends the run (QEMU's isa-debug-exit at the
//! same port plays this part under `scripts/qemu.sh`).

use lde_abi::exit::GUEST_MAX;
use lde_abi::ports::{EXIT_PORT, EXIT_PORT_SIZE};

/// What a write to the exit port asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitRequest {
    /// The guest shut down with this code.
    Exit(u32),
    /// The guest wrote something that is not a valid exit code.
    Invalid(u32),
}

/// The exit device; it has no state.
#[derive(Debug, Default)]
pub struct ExitPort;

impl ExitPort {
    /// Whether `port` belongs to this device.
    pub fn claims(port: u16) -> bool {
        (EXIT_PORT..EXIT_PORT + EXIT_PORT_SIZE).contains(&port)
    }

    /// Handles a write of `data` (1 to 4 bytes, little-endian) at `port`.
    pub fn write(&self, port: u16, data: &[u8]) -> ExitRequest {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        if port != EXIT_PORT || data.len() != 4 || value > GUEST_MAX {
            return ExitRequest::Invalid(value);
        }
        ExitRequest::Exit(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dword_write_is_an_exit_code() {
        assert_eq!(ExitPort.write(EXIT_PORT, &7u32.to_le_bytes()), ExitRequest::Exit(7));
        assert_eq!(ExitPort.write(EXIT_PORT, &0u32.to_le_bytes()), ExitRequest::Exit(0));
    }

    #[test]
    fn anything_else_is_invalid() {
        assert_eq!(ExitPort.write(EXIT_PORT, &[1]), ExitRequest::Invalid(1));
        assert_eq!(ExitPort.write(EXIT_PORT + 1, &[0; 4]), ExitRequest::Invalid(0));
        assert_eq!(ExitPort.write(EXIT_PORT, &64u32.to_le_bytes()), ExitRequest::Invalid(64));
        assert!(ExitPort::claims(EXIT_PORT + 3));
        assert!(!ExitPort::claims(EXIT_PORT + 4));
    }
}
