//! The shutdown port: a 32-bit write of an exit code ends the run (QEMU's isa-debug-exit at the
//! same port plays this part under `scripts/qemu.sh`).

use lde_abi::exit_code::GUEST_MAX;
use lde_abi::ports::{SHUTDOWN_PORT, SHUTDOWN_PORT_SIZE};

/// What a write to the shutdown port asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// The guest shut down with this code.
    Shutdown(u32),
    /// The guest wrote something that is not a valid exit code.
    Invalid(u32),
}

/// The shutdown device; it has no state.
#[derive(Debug, Default)]
pub struct ShutdownPort;

impl ShutdownPort {
    /// Whether `port` belongs to this device.
    pub fn claims(port: u16) -> bool {
        (SHUTDOWN_PORT..SHUTDOWN_PORT + SHUTDOWN_PORT_SIZE).contains(&port)
    }

    /// Handles a write of `data` (1 to 4 bytes, little-endian) at `port`.
    pub fn write(&self, port: u16, data: &[u8]) -> ShutdownRequest {
        let mut bytes = [0u8; 4];
        let n = data.len().min(4);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(bytes);
        if port != SHUTDOWN_PORT || data.len() != 4 || value > GUEST_MAX {
            return ShutdownRequest::Invalid(value);
        }
        ShutdownRequest::Shutdown(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dword_write_is_an_exit_code() {
        assert_eq!(ShutdownPort.write(SHUTDOWN_PORT, &7u32.to_le_bytes()), ShutdownRequest::Shutdown(7));
        assert_eq!(ShutdownPort.write(SHUTDOWN_PORT, &0u32.to_le_bytes()), ShutdownRequest::Shutdown(0));
    }

    #[test]
    fn anything_else_is_invalid() {
        assert_eq!(ShutdownPort.write(SHUTDOWN_PORT, &[1]), ShutdownRequest::Invalid(1));
        assert_eq!(ShutdownPort.write(SHUTDOWN_PORT + 1, &[0; 4]), ShutdownRequest::Invalid(0));
        assert_eq!(ShutdownPort.write(SHUTDOWN_PORT, &64u32.to_le_bytes()), ShutdownRequest::Invalid(64));
        assert!(ShutdownPort::claims(SHUTDOWN_PORT + 3));
        assert!(!ShutdownPort::claims(SHUTDOWN_PORT + 4));
    }
}
