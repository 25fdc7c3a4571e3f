//! `lde run`: boots the guest with the chosen programs, forwards the terminal, and at the end
//! prints the outcome and the summary and writes --report and --timeline.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lde::devices::newlines::{to_lf, LfOnly};
use lde::devices::serial::SharedBuffer;
use lde::observe::monitor::Observer;
use lde::observe::{states, summary, timeline, trace, watch};
use lde::output::OutputFile;
use lde::{host, Outcome, RunConfig, RunReport};

use super::{prepare_programs, Error};
use crate::cli::{RunArgs, SeccompCheck};

pub fn run(args: RunArgs, started: Instant) -> Result<ExitCode, Error> {
    if args.list {
        list_programs(args.json);
        return Ok(ExitCode::SUCCESS);
    }
    check_paths(&args)?;
    let (initrd, cmdline) = prepare_programs(&args.programs, &args.cmdline)?;
    // The output files are created before the guest runs, so that a bad path is said at once
    // rather than after a long run whose results would then be lost.
    // They are written whole at the end, or not at all (see lde::output).
    let outputs = Outputs {
        report: create(&args.report, "report")?,
        timeline: create(&args.timeline, "timeline")?,
        trace: create(&args.trace, "trace")?,
    };
    // Bound before the VM is built, so that a port in use is said at once.
    let gdb = match &args.gdb {
        Some(addr) => Some(lde::gdb::Listener::bind(addr).map_err(Error::Gdb)?),
        None => None,
    };
    let host = host::detect();
    let host_line = format!("lde: host: {} on {}", host.kvm, host.cpu_model);
    let guest_output = GuestOutput::new(args.watch);
    let observer = guest_output.observer(args.watch, host.kvm.slug());
    let config = RunConfig {
        api_sock: args.api_sock.clone(),
        observer,
        exit_hook: None,
        kernel: args.kernel,
        mem_mib: args.mem,
        cmdline,
        initrd: Some(initrd),
        timeout: args.timeout,
        kvm_device: args.kvm_device,
        console: guest_output.console(),
        input: Some(libc::STDIN_FILENO),
        started,
        host,
        seccomp: !args.no_seccomp,
        seccomp_check: args.seccomp_check.map(|t| match t {
            SeccompCheck::Vcpu => lde::seccomp::Thread::Vcpu,
            SeccompCheck::Events => lde::seccomp::Thread::EventLoop,
        }),
        disks: args.disks,
        cpus: args.cpus,
    };
    let report = boot(config, gdb, (!args.quiet).then_some(host_line.as_str()))?;
    print_outcome(&report.outcome);
    for id in &report.never_started {
        eprintln!("lde: vCPU {id} was never started: the guest sent it no INIT and SIPI");
    }
    guest_output.print_captured();
    if args.states {
        print_states(&report);
    }
    outputs.write(&report)?;
    if !args.quiet {
        print_summary(&report);
    }
    Ok(ExitCode::from(report.outcome.exit_code()))
}

/// `lde run --list`: the built-in programs, as a table or as JSON.
fn list_programs(json: bool) {
    if json {
        let list: Vec<serde_json::Value> =
            lde::guest::PROGRAMS.iter().map(|p| serde_json::json!({ "name": p.name, "about": p.about })).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("a list of strings serializes"));
        return;
    }
    let width = lde::guest::PROGRAMS.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in lde::guest::PROGRAMS {
        println!("{:width$}  {}", p.name, p.about);
    }
}

/// The output file at `path`, if one is asked for, created now and written at the end.
fn create(path: &Option<PathBuf>, what: &'static str) -> Result<Option<OutputFile>, Error> {
    match path {
        None => Ok(None),
        Some(p) => OutputFile::create(p).map(Some).map_err(|e| Error::WriteOutput(what, p.clone(), e.to_string())),
    }
}

/// Where the guest's output goes while it runs. A terminal gets the guest's `\r\n` line ends;
/// a pipe or a file gets plain `\n`. With --watch on a terminal, the guest's output is shown
/// under the table and printed in full when the run ends.
struct GuestOutput {
    watch_terminal: bool,
    stdout_terminal: bool,
    captured: SharedBuffer,
}

impl GuestOutput {
    fn new(watch: bool) -> GuestOutput {
        GuestOutput {
            watch_terminal: watch && std::io::stderr().is_terminal(),
            stdout_terminal: std::io::stdout().is_terminal(),
            captured: SharedBuffer::default(),
        }
    }

    /// The guest's console.
    fn console(&self) -> Box<dyn std::io::Write + Send> {
        match (self.watch_terminal, self.stdout_terminal) {
            (true, _) => Box::new(self.captured.clone()),
            (false, true) => Box::new(std::io::stdout()),
            (false, false) => Box::new(LfOnly::new(std::io::stdout())),
        }
    }

    /// The --watch status: a table on a terminal, status lines otherwise.
    fn observer(&self, watch: bool, kvm: &'static str) -> Option<Observer> {
        match (watch, self.watch_terminal) {
            (false, _) => None,
            (true, true) => Some(watch::terminal(kvm, self.captured.clone())),
            (true, false) => Some(watch::piped()),
        }
    }

    /// With --watch on a terminal, the guest's output in full, once the run has ended.
    fn print_captured(&self) {
        if self.watch_terminal {
            let text = self.captured.0.lock().expect("buffer lock poisoned");
            let _ = std::io::stdout().write_all(&if self.stdout_terminal { text.clone() } else { to_lf(&text) });
        }
    }
}

/// Builds the VM and runs it, under GDB if `gdb` is bound; says `host_line` once it is built.
fn boot(config: RunConfig, gdb: Option<lde::gdb::Listener>, host_line: Option<&str>) -> Result<RunReport, Error> {
    let vm = lde::prepare(config)?;
    if let Some(line) = host_line {
        eprintln!("{line}");
    }
    let report = match gdb {
        Some(listener) => {
            eprintln!(
                "lde: gdb: waiting for GDB on {} (in GDB: target remote {}); the vCPU is stopped before the kernel's first instruction",
                listener.addr, listener.addr
            );
            vm.debug(listener)?
        }
        None => vm.run()?,
    };
    Ok(report)
}

/// Says how the run ended, where the exit code alone does not.
fn print_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Shutdown(_) => {}
        Outcome::Crashed { crash, registers } => {
            eprintln!("lde: guest crashed: {crash}");
            registers.lines().for_each(|line| eprintln!("lde: {line}"));
        }
        Outcome::Timeout { after: t, held_by } => {
            eprintln!("lde: timeout: the guest was still running after {} s; stopped it: {held_by}", t.as_secs_f64())
        }
        Outcome::Interrupted(signal) => eprintln!("lde: interrupted by signal {signal}; stopped the guest"),
        Outcome::OutputClosed | Outcome::GdbKilled => {}
    }
}

/// The output files of a run, created before it starts.
struct Outputs {
    report: Option<OutputFile>,
    timeline: Option<OutputFile>,
    trace: Option<OutputFile>,
}

impl Outputs {
    /// Writes each file asked for, whole.
    fn write(self, report: &RunReport) -> Result<(), Error> {
        if let Some(file) = self.report {
            write_report(file, report)?;
        }
        if let Some(file) = self.timeline {
            write_timeline(file, report)?;
        }
        if let Some(file) = self.trace {
            write_trace(file, report)?;
        }
        Ok(())
    }
}

/// Writes --trace, which needs the kernel's event log.
fn write_trace(file: OutputFile, report: &RunReport) -> Result<(), Error> {
    let path = file.path().to_owned();
    match &report.recorder {
        Some(recorder) => {
            let text = serde_json::to_string(&trace::build(recorder)).expect("the trace serializes");
            file.commit(|out| out.write_all((text + "\n").as_bytes())).map_err(|e| e.to_string())
        }
        None => Err("the kernel's counters could not be read".to_string()),
    }
    .map_err(|e| Error::WriteOutput("trace", path, e))
}

/// `--states`: every state change, one line each, in guest time since the kernel started.
fn print_states(report: &RunReport) {
    let Some(recorder) = &report.recorder else {
        eprintln!("lde: states: the kernel's counters could not be read");
        return;
    };
    let page = recorder.last.as_deref();
    let (boot, hz) = page.map_or((0, 1), |p| (p.boot_tsc, p.tsc_hz.max(1)));
    let names: std::collections::BTreeMap<u32, String> =
        recorder.processes().iter().map(|p| (p.pid, p.name().to_string())).collect();
    for t in states::transitions(&recorder.events) {
        let ms = t.tsc.saturating_sub(boot) as f64 * 1e3 / hz as f64;
        let name = names.get(&t.pid).map_or("?", String::as_str);
        let from = t.from.map_or("new", |s| s.name());
        eprintln!("lde: {ms:.3} ms  pid {} {name}  {from} -> {}  ({})", t.pid, t.to.label(), t.cause.name());
    }
    if recorder.events_lost > 0 {
        eprintln!(
            "lde: states: {} events were lost (the kernel's ring overflowed): changes are missing",
            recorder.events_lost
        );
    }
}

/// Writes --report.
fn write_report(file: OutputFile, report: &RunReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(&report.report()).expect("the report serializes");
    let path = file.path().to_owned();
    file.commit(|out| out.write_all((text + "\n").as_bytes()))
        .map_err(|e| Error::WriteOutput("report", path, e.to_string()))
}

/// Writes --timeline, which needs the kernel's counters.
fn write_timeline(file: OutputFile, report: &RunReport) -> Result<(), Error> {
    let path = file.path().to_owned();
    match &report.recorder {
        Some(recorder) => {
            let title = format!("{} on {} ({})", command_line(), report.host.cpu_model, report.host.kvm.slug());
            file.commit(|out| timeline::write(recorder, &title, out)).map_err(|e| e.to_string())
        }
        None => Err("the kernel's counters could not be read".to_string()),
    }
    .map_err(|e| Error::WriteOutput("timeline", path, e))
}

/// The summary on stderr: the kernel's counters, KVM's statistics of the vCPU, the exit code
/// and the times.
fn print_summary(report: &RunReport) {
    if let (Some(page), Some(recorder)) = (report.stats(), &report.recorder) {
        if recorder.torn {
            eprintln!("lde: the guest stopped while updating its counters: the figures below may mix before and after");
        }
        let ran = report.banner_after.map(|b| report.ended_after.saturating_sub(b).as_secs_f64());
        let lines = summary::lines(page, &recorder.processes(), report.host.kvm, ran);
        for line in summary::warnings(recorder).into_iter().chain(lines) {
            eprintln!("lde: {line}");
        }
    }
    if let Some(kvm) = &report.kvm_stats {
        let pick: Vec<String> = ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "insn_emulation"]
            .iter()
            .filter_map(|k| kvm.get(*k).map(|v| format!("{k} {v}")))
            .collect();
        if !pick.is_empty() {
            eprintln!("lde: KVM's vCPU statistics: {}", pick.join(", "));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let banner = report.banner_after.map_or("never".to_string(), |d| format!("{:.1} ms", ms(d)));
    eprintln!(
        "lde: exit code {}; banner after {banner}, end after {:.1} ms (from process start); {} VM exits to lde",
        report.outcome.exit_code(),
        ms(report.ended_after),
        report.exits.total(),
    );
}

/// The command line that made this run, quoted as a shell would need it, without the options
/// that only name output files.
fn command_line() -> String {
    let mut words = vec!["lde".to_string()];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if ["--timeline", "--report", "--api-sock"].contains(&arg.as_str()) {
            args.next();
            continue;
        }
        if ["--timeline=", "--report=", "--api-sock="].iter().any(|o| arg.starts_with(o)) {
            continue;
        }
        let plain = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,/=:@".contains(&b));
        words.push(if plain { arg } else { format!("'{}'", arg.replace('\'', "'\\''")) });
    }
    words.join(" ")
}

/// Refuses one file for two uses (an output twice, or an output that is also an input) before
/// anything is read or created.
fn check_paths(args: &RunArgs) -> Result<(), Error> {
    let outputs: Vec<(&'static str, &std::path::Path)> = [
        ("--report", &args.report),
        ("--timeline", &args.timeline),
        ("--trace", &args.trace),
        ("--api-sock", &args.api_sock),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some((flag, path.as_deref()?)))
    .collect();
    let mut inputs: Vec<(&'static str, &std::path::Path)> =
        args.kernel.iter().map(|k| ("--kernel", k.as_path())).collect();
    inputs.extend(args.programs.own.iter().map(|p| ("--program", p.as_path())));
    match lde::files::first_clash(&outputs, &inputs) {
        Some((first, second, path)) => Err(Error::SamePath(first, second, path.to_owned())),
        None => Ok(()),
    }
}
