//! `lde probe`: boots the guest with the probe programs (or reads a probe transcript) and
//! prints how this host delivers each system-call door and trap.

use std::process::ExitCode;
use std::time::Instant;

use lde::{host, Outcome, RunConfig};
use lde_abi::exit as code;

use super::Error;
use crate::cli::ProbeArgs;

pub fn probe(args: ProbeArgs, started: Instant) -> Result<ExitCode, Error> {
    if args.programs {
        lde::probe::PROGRAMS.iter().for_each(|p| println!("{p}"));
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(path), Some(host)) = (&args.transcript, &args.host_name) {
        let bytes = lde::files::read_limited(path, lde::files::TEXT_MAX_SIZE)
            .map_err(|e| Error::Transcript(path.clone(), e))?;
        println!("host: {host}");
        print_probe(&String::from_utf8_lossy(&bytes));
        return Ok(ExitCode::SUCCESS);
    }
    let specs: Vec<String> = lde::probe::PROGRAMS.iter().map(|s| s.to_string()).collect();
    let programs = lde::initrd::prepare(&specs, Vec::new())?;
    let transcript = lde::devices::serial::SharedBuffer::default();
    let host = host::detect();
    let host_line = format!("{} on {}", host.kvm, host.cpu_model);
    let mut config = RunConfig::unattended(
        programs.cmdline,
        programs.initrd,
        Box::new(transcript.clone()),
        args.timeout,
        args.kvm_device,
        host,
    );
    config.started = started;
    let report = lde::run(config)?;
    let text = String::from_utf8_lossy(&transcript.0.lock().expect("transcript lock")).into_owned();
    println!("host: {host_line}");
    if let Outcome::Crashed { crash, registers } = &report.outcome {
        println!("the guest crashed during the probe: {crash}\n{registers}");
        println!("guest output:\n{text}");
        return Ok(ExitCode::from(code::GUEST_CRASHED));
    }
    print_probe(&text);
    Ok(ExitCode::SUCCESS)
}

fn print_probe(transcript: &str) {
    let rows = lde::probe::parse(transcript);
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!("{:width$}  delivery", "door / trap");
    for row in rows {
        println!("{:width$}  {}", row.what, row.delivery);
    }
}
