//! The guest images built with lde (see build.rs) and embedded in the binary.

/// The lde kernel ELF, built for `x86_64-unknown-none`.
pub const KERNEL: &[u8] = include_bytes!(env!("LDE_KERNEL_PATH"));
