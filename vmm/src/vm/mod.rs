//! One run of a guest, in three steps: [`RunConfig`] says what to run; [`prepare`] builds the
//! VM from it (KVM, memory, irqchip, vCPU, the kernel loaded: a [`Vm`]); [`Vm::run`] runs it to
//! its end and returns a [`RunReport`] whose [`Outcome`] says how it ended.
//!
//! `aps.rs` the other vCPUs of `--cpus`, `config.rs` the configuration, `disks.rs` the `--disk` devices wired into the VM, `error.rs` why a run could not happen, `build.rs` the
//! builder, `run.rs` the run's threads from start to report, `event_loop.rs` the event-loop
//! thread and what stops a run, `signals.rs` the signals that stop a run and the signalfd that
//! loop waits on, `nmi.rs` the NMI sender of the `host-nmi` test hook, `outcome.rs` the
//! outcome, the report and the timeout diagnosis.

mod aps;
mod build;
mod config;
mod disks;
mod error;
mod event_loop;
mod nmi;
mod outcome;
mod run;
mod signals;

pub(crate) use build::create_vm;
pub use build::{open_kvm, prepare, Vm};
pub use config::RunConfig;
pub use error::Error;
pub use outcome::{Outcome, RunReport};
pub use signals::name as signal_name;

/// Runs the guest to its end: [`prepare`], then [`Vm::run`].
pub fn run(config: RunConfig) -> Result<RunReport, Error> {
    prepare(config)?.run()
}
