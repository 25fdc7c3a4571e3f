//! `lde completions SHELL` and `lde man`: a shell completion script and the manual page, both
//! generated from the clap definitions in cli.rs, so they never disagree with `--help`.

use std::process::ExitCode;

use clap::CommandFactory;

use super::Error;
use crate::cli::{Cli, CompletionsArgs};

pub fn completions(args: CompletionsArgs) -> Result<ExitCode, Error> {
    clap_complete::generate(args.shell, &mut Cli::command(), "lde", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man() -> Result<ExitCode, Error> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| Error::Write("standard output".into(), e))?;
    Ok(ExitCode::SUCCESS)
}
