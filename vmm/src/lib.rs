//! lde: a KVM hypervisor that boots the lde guest kernel through PVH, forwards its serial
//! console, and stops it cleanly with an exit code.
//!
//! Module map: [`layout`] is the guest-physical memory map; [`boot`] loads the kernel and
//! writes the PVH start info; [`vcpu`] runs the vCPU; [`exit`] decides what each VM exit means;
//! [`devices`] are the UART and the exit port; [`host`] says what KVM this is; [`observe`] reads
//! and reports the kernel's counters and KVM's; [`vm`] puts it all together for one run.

pub mod bench;
pub mod boot;
pub mod devices;
pub mod exit;
pub mod guest;
pub mod host;
pub mod initrd;
pub mod layout;
pub mod observe;
pub mod probe;
pub mod terminal;
pub mod vcpu;
pub mod vm;

pub use vm::{prepare, run, Error, Outcome, RunConfig, RunReport, Vm};
