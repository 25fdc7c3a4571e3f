//! Kernel logic of the lde guest that touches no hardware: command-line parsing, trap names,
//! memory-map arithmetic. It is `no_std` so the kernel can use it, and unit-tested on the host
//! with plain `cargo test`.
#![no_std]

pub mod cmdline;
pub mod memmap;
pub mod trap;
