//! One module per `lde` subcommand, each turning its parsed flags into a configuration, running
//! it, and printing what it found. A subcommand returns the exit status of a run that happened,
//! or an [`Error`] that `main` prints once with its causes.

pub mod bench;
pub mod docs;
pub mod export;
pub mod probe;
pub mod run;
pub mod stats;

use std::io;
use std::path::PathBuf;

use lde_abi::cmdline as keys;
use lde_abi::exit_code as code;

use crate::cli::{ProgramArgs, TimerMode};

/// Why a subcommand could not do its job. Messages that end in the operating system's reason
/// carry it as text, not as a source, so that it is printed once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vm(#[from] lde::Error),
    #[error(transparent)]
    Programs(#[from] lde::initrd::Error),
    #[error(transparent)]
    Bench(#[from] lde::bench::Error),
    #[error("cannot create {}: {}", .0.display(), .1)]
    CreateDir(PathBuf, io::Error),
    #[error("cannot write {}: {}", .0.display(), .1)]
    Write(PathBuf, io::Error),
    #[error("cannot write the {} {}: {}", .0, .1.display(), .2)]
    WriteOutput(&'static str, PathBuf, String),
    #[error("cannot read the transcript {}: {}", .0.display(), .1)]
    Transcript(PathBuf, lde::files::Error),
    #[error("cannot read {}: {} (is `lde run --api-sock {}` running?)", .0.display(), .1, .0.display())]
    ApiRead(PathBuf, io::Error),
    #[error("{} did not answer with JSON: {}", .0.display(), .1)]
    ApiJson(PathBuf, serde_json::Error),
    #[error("cannot read the baseline {}: {}", .0.display(), .1)]
    Baseline(PathBuf, String),
    #[error("cannot compare with the baseline {}: {}", .0.display(), .1)]
    Incomparable(PathBuf, String),
    #[error("{} and {} name the same file ({}): give each its own", .0, .1, .2.display())]
    SamePath(&'static str, &'static str, PathBuf),
    #[error("{} did not answer within {} s", .0.display(), .1.as_secs_f64())]
    ApiTimeout(PathBuf, std::time::Duration),
    #[error(transparent)]
    Limit(lde::boot::Error),
    #[error(transparent)]
    Gdb(lde::gdb::ListenError),
}

impl Error {
    /// The exit status of the lde process for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Vm(e) => e.exit_code(),
            Error::Programs(lde::initrd::Error::Read(..)) => code::BAD_IMAGE,
            Error::Programs(_) => code::USAGE,
            Error::Bench(e) => e.exit_code(),
            Error::Transcript(..) => code::BAD_IMAGE,
            Error::Baseline(..) | Error::Incomparable(..) | Error::SamePath(..) | Error::Limit(_) | Error::Gdb(_) => {
                code::USAGE
            }
            Error::CreateDir(..)
            | Error::Write(..)
            | Error::WriteOutput(..)
            | Error::ApiRead(..)
            | Error::ApiTimeout(..)
            | Error::ApiJson(..) => code::VMM_FAILED,
        }
    }
}

/// The initrd and the full kernel command line for `programs` (program words, then `extra`),
/// within the command line's limit.
fn prepare_programs(programs: &ProgramArgs, extra: &str) -> Result<(Vec<u8>, String), Error> {
    let own = programs.own.iter().map(|p| lde::initrd::read_program(p)).collect::<Result<Vec<_>, _>>()?;
    let prepared = match programs.none {
        true => lde::initrd::Programs::none(),
        false => lde::initrd::prepare(&programs.programs, own)?,
    };
    let mode = match programs.timer_mode {
        TimerMode::Periodic => "periodic",
        TimerMode::Deadline => "deadline",
    };
    let timer = format!(
        "{}={} {}={mode} {}={}",
        keys::TIMER_HZ_KEY,
        programs.timer_hz,
        keys::TIMER_MODE_KEY,
        keys::SLICE_KEY,
        programs.slice
    );
    let verbose = if programs.kernel_stats { format!("{}=1", keys::VERBOSE_KEY) } else { String::new() };
    let cmdline = [prepared.cmdline.as_str(), &timer, &verbose, extra.trim()]
        .iter()
        .filter(|w| !w.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    lde::boot::check_cmdline(&cmdline).map_err(Error::Limit)?;
    Ok((prepared.initrd, cmdline))
}
