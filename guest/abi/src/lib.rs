//! The contract between the lde VMM (host), the lde kernel and its user programs.
//!
//! Everything both sides must agree on is defined here once: I/O ports, exit codes, the PVH
//! boot structures, and the kernel command-line keys. The crate is `no_std` and has no
//! dependencies so the kernel, the user runtime and the VMM can all use it.
#![no_std]

pub mod boot;
pub mod cmdline;
pub mod exit_code;
pub mod histogram;
pub mod ports;
pub mod stats;
pub mod syscall;
pub mod user;
pub mod virtio;
