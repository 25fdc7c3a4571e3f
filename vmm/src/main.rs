//! The `lde` command line: parse → config → run → exit code. Errors are printed once, as one
//! line with their causes.
//!
//! `cli.rs` is what clap parses; `commands/` holds one module per subcommand.

// std's printing macros panic when the reader of a pipe went away; these replace them in every
// module below (see `lde::output`).
#[allow(unused_macros)]
macro_rules! println { ($($t:tt)*) => { lde::lde_println!($($t)*) } }
#[allow(unused_macros)]
macro_rules! print { ($($t:tt)*) => { lde::lde_print!($($t)*) } }
#[allow(unused_macros)]
macro_rules! eprintln { ($($t:tt)*) => { lde::lde_eprintln!($($t)*) } }
#[allow(unused_macros)]
macro_rules! eprint { ($($t:tt)*) => { lde::lde_eprint!($($t)*) } }

mod cli;
mod commands;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let started = Instant::now();
    // Log lines are lde's own words on stderr, so they start with `lde:` like every other.
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("LDE_LOG", "warn"))
        .format(|out, record| {
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            writeln!(out, "lde: {level}: {}", record.args())
        })
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::usage_error(e),
    };
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args, started),
        Command::Export(args) => commands::export::export(args),
        Command::Probe(args) => commands::probe::probe(args, started),
        Command::Stats(args) => commands::stats::stats(args),
        Command::Bench(args) => commands::bench::bench(args),
        Command::Completions(args) => commands::docs::completions(args),
        Command::Man => commands::docs::man(),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lde: error: {}", chain(&e));
            ExitCode::from(e.exit_code())
        }
    };
    // A reader that went away ends lde quietly, whatever else happened (see lde::output).
    if lde::stdio::closed() {
        return ExitCode::from(lde_abi::exit_code::OUTPUT_CLOSED);
    }
    code
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
