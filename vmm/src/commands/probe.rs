//! `lde probe`: boots the guest with the probe programs (or reads a probe transcript) and
//! prints how this host delivers each system-call door and trap.

use std::process::ExitCode;
use std::time::Instant;

use lde::probe::Delivery;
use lde::{host, Outcome, RunConfig};
use lde_abi::exit_code as code;

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
        print_probe(host, None, &String::from_utf8_lossy(&bytes), args.json, None);
        return Ok(ExitCode::SUCCESS);
    }
    let specs: Vec<String> = lde::probe::PROGRAMS.iter().map(|s| s.to_string()).collect();
    let programs = lde::initrd::prepare(&specs, Vec::new())?;
    let transcript = lde::devices::serial::SharedBuffer::default();
    let host = host::detect();
    let host_line = format!("{} on {}", host.kvm, host.cpu_model);
    let kvm = host.kvm.slug();
    // The findings are read from the kernel's `stats:` lines.
    let cmdline = format!("{} {}=1", programs.cmdline, lde_abi::cmdline::VERBOSE_KEY);
    let mut config = RunConfig::unattended(
        cmdline,
        programs.initrd,
        Box::new(transcript.clone()),
        args.timeout,
        args.kvm_device.clone(),
        host,
    );

    config.started = started;
    // Several processors, on a probe VM of their own: whether this KVM starts a second vCPU the
    // way kernels do and delivers an IPI to it.
    let smp = match lde::vm::open_kvm(&args.kvm_device) {
        Ok(kvm) => {
            lde::smp_probe::measure(&kvm, SMP_PATIENCE).map_or_else(|e| format!("not measured: {e}"), |f| f.line())
        }
        Err(e) => format!("not measured: {e}"),
    };
    let report = lde::run(config)?;
    let text = String::from_utf8_lossy(&transcript.0.lock().expect("transcript lock")).into_owned();
    if let Outcome::Crashed { crash, registers } = &report.outcome {
        print!("{text}");
        eprintln!("lde: the guest crashed during the probe: {crash}");
        registers.lines().for_each(|line| eprintln!("lde: {line}"));
        return Ok(ExitCode::from(code::GUEST_CRASHED));
    }
    print_probe(&host_line, Some(kvm), &text, args.json, Some(&smp));
    Ok(ExitCode::SUCCESS)
}

/// How long the SMP probe waits for the second vCPU (PVM emulates its every instruction).
const SMP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The findings of a probe transcript from `host`: a table, or JSON.
fn print_probe(host: &str, kvm: Option<&str>, transcript: &str, json: bool, smp: Option<&str>) {
    let rows = lde::probe::parse(transcript);
    let isolation = lde::probe::parse_isolation(transcript);
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let (delivery, detail) = match r.delivery {
                    Delivery::Architectural => ("architectural", None),
                    Delivery::Recovered(how) => ("recovered", Some(how)),
                    Delivery::Missing(why) => ("missing", Some(why)),
                };
                serde_json::json!({ "what": r.what, "delivery": delivery, "detail": detail })
            })
            .collect();
        let isolation: Vec<serde_json::Value> = isolation
            .iter()
            .map(|r| serde_json::json!({ "what": r.what, "state": r.state, "deviation": r.deviation }))
            .collect();
        let doc = serde_json::json!({ "host": host, "kvm": kvm, "rows": rows, "isolation": isolation, "smp": smp });
        println!("{}", serde_json::to_string_pretty(&doc).expect("the probe's findings serialize"));
        return;
    }
    println!("host: {host}");
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!("{:width$}  delivery", "door / trap");
    for row in rows {
        println!("{:width$}  {}", row.what, row.delivery);
    }
    let width = isolation.iter().map(|r| r.what.len()).max().unwrap_or(0).max(width);
    println!();
    println!("{:width$}  state", "isolation");
    for row in isolation {
        println!("{:width$}  {}", row.what, row.state);
    }
    if let Some(smp) = smp {
        println!();
        println!("smp: {smp}");
    }
}
