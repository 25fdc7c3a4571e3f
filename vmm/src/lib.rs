//! lde: a KVM hypervisor that boots the lde guest kernel through PVH, forwards its serial
//! console, and stops it cleanly with an exit code.
//!
//! Module map: [`layout`] is the guest-physical memory map; [`elf`] is the host's ELF reader
//! (kernel checks, symbol lookup); [`boot`] loads the kernel and writes the PVH start info;
//! [`initrd`] packs the programs; [`guest`] holds the embedded kernel and programs; [`vcpu`]
//! runs the vCPU (with an optional VM-exit hook); [`vmexit`] decides what each VM exit means;
//! [`devices`] are the UART and the shutdown port; [`host`] says what KVM this is; [`terminal`] puts
//! stdin in raw mode; [`vm`] builds a VM and runs it for one run; [`observe`] reads and reports
//! the kernel's counters and KVM's; [`bench`] and [`probe`] are `lde bench` and `lde probe`.
//! [`output`] writes output files whole or not at all; [`stdio`] is lde's own stdout and stderr;
//! [`files`] reads input files within limits; [`seccomp`] confines the run's threads; [`gdb`]
//! serves GDB (`lde run --gdb`).
//! The `lde` binary itself (main.rs, cli.rs, commands/) is the command line over this library.

// std's printing macros panic when the reader of a pipe went away; these replace them in every
// module below (see `stdio`).
#[allow(unused_macros)]
macro_rules! println { ($($t:tt)*) => { $crate::lde_println!($($t)*) } }
#[allow(unused_macros)]
macro_rules! print { ($($t:tt)*) => { $crate::lde_print!($($t)*) } }
#[allow(unused_macros)]
macro_rules! eprintln { ($($t:tt)*) => { $crate::lde_eprintln!($($t)*) } }
#[allow(unused_macros)]
macro_rules! eprint { ($($t:tt)*) => { $crate::lde_eprint!($($t)*) } }

pub mod bench;
pub mod boot;
pub mod cpuid;
pub mod devices;
pub mod elf;
pub mod files;
pub mod gdb;
pub mod guest;
pub mod host;
pub mod initrd;
pub mod layout;
pub mod mptable;
pub mod observe;
pub mod output;
pub mod probe;
pub mod probe_vm;
pub mod seccomp;
pub mod smp_probe;
pub mod stdio;
pub mod terminal;
pub mod vcpu;
pub mod vm;
pub mod vmexit;

pub use vm::{prepare, run, Error, Outcome, RunConfig, RunReport, Vm};
