//! Kernel logic of the lde guest that touches no hardware: command-line and program-spec
//! parsing, ELF and cpio validation, the process table and scheduler, trap names, memory-map
//! arithmetic. It is `no_std` so the kernel can use it, and unit-tested on the host with plain
//! `cargo test`.
#![no_std]

pub mod acpi;
pub mod args;
pub mod children;
pub mod cmdline;
pub mod cpio;
pub mod decimal;
pub mod elf;
pub mod memmap;
pub mod mptable;
pub mod proc;
pub mod trap;
pub mod usercopy;
pub mod virtio;
