//! The `lde` command line: parse → config → run → exit code. Errors are printed once, as one
//! line with their causes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use lde::{host, layout, Outcome, RunConfig};
use lde_abi::cmdline::{self as keys, DEFAULT_SLICE, DEFAULT_TIMER_HZ};
use lde_abi::exit as code;

const EXIT_CODES: &str = "\
Exit status:
  0-63  the guest's own code: 0 = every process succeeded, 1 = a process failed,
        3 = kernel panic, 4 = the kernel could not read its boot information
  2     usage error (bad flag or value)
  70    the guest crashed (triple fault, KVM internal error, unexpected VM exit)
  71    KVM is unavailable (no /dev/kvm, no permission, missing capability)
  72    the kernel (or program) file cannot be read or is not a valid image
  74    the VMM itself failed
  124   --timeout expired
  130   stopped by SIGINT or SIGTERM";

/// lde: limited direct execution, on real hardware virtualization.
///
/// Boots the lde guest kernel in a KVM virtual machine, forwards its serial console to this
/// terminal, and exits with the guest's exit code.
#[derive(Parser)]
#[command(name = "lde", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the guest kernel, run the programs in ring 3, and exit with the kernel's code.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Write the kernel, the initrd and the command line `lde run` would boot to DIR.
    ///
    /// Writes DIR/kernel.elf, DIR/initrd.cpio and DIR/cmdline: what scripts/qemu.sh boots.
    Export(ExportArgs),
    /// Check how this host delivers each system-call door and trap; run this first on a new
    /// machine or CI runner.
    ///
    /// Boots the guest with a few programs that make system calls through `syscall` and
    /// `int 0x80` and raise #UD, #BP, #GP, #PF and #DE in ring 3, then prints for each whether
    /// it arrived architecturally, through a path the kernel recovers (PVM), or not at all.
    /// Exits 0 when the probe ran, whatever it found.
    Probe(ProbeArgs),
    /// Print the live counters of a running `lde run --api-sock PATH` as JSON.
    Stats(StatsArgs),
    /// Measure what each crossing costs on this host: system calls through both doors,
    /// exceptions, timer ticks, context switches, VM exits (ring-3 microbenchmarks in the guest,
    /// and two host references).
    ///
    /// Prints a table of min, median and p99 in TSC cycles and ns, with the path each operation
    /// took (architectural or recovered) and the host's facts. Exits 1 when --baseline is given
    /// and a median got worse than --max-regression allows.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Write the results as JSON (the same form --baseline reads).
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
    /// Draw a histogram per measurement as SVG.
    #[arg(long, value_name = "FILE.svg")]
    histogram: Option<PathBuf>,
    /// Compare medians with an earlier `--json` file.
    #[arg(long, value_name = "FILE.json")]
    baseline: Option<PathBuf>,
    /// With --baseline: the largest slowdown of a median, in percent, that still passes.
    #[arg(long, value_name = "PCT", default_value_t = 10.0, requires = "baseline")]
    max_regression: f64,
    /// Run only the measurements whose name contains NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    filter: Vec<String>,
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    kvm_device: PathBuf,
    /// No progress lines.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// The socket `lde run --api-sock` listens on.
    #[arg(value_name = "PATH")]
    socket: PathBuf,
}

#[derive(Args)]
struct ProbeArgs {
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    kvm_device: PathBuf,
    /// Stop the probe if it has not finished after SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "60")]
    timeout: Duration,
    /// Do not boot: read the serial transcript of a probe run from FILE (scripts/qemu.sh
    /// --probe uses this for QEMU), naming its host HOST.
    #[arg(long, value_name = "FILE", requires = "host_name")]
    transcript: Option<PathBuf>,
    /// The host the transcript came from.
    #[arg(long = "host", value_name = "HOST")]
    host_name: Option<String>,
    /// Print the programs a probe runs, one per line, and exit.
    #[arg(long)]
    programs: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    programs: ProgramArgs,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Extra words for the kernel command line.
    #[arg(long, value_name = "WORDS", default_value = "")]
    cmdline: String,
}

/// Which programs to run (shared by `run` and `export`).
#[derive(Args)]
struct ProgramArgs {
    /// Programs to run, each a built-in name with its arguments as one word ('counter 5000');
    /// none: a short demo. See --list.
    #[arg(value_name = "PROGRAM")]
    programs: Vec<String>,
    /// Also run this ELF file of your own (named after its file name; repeatable).
    #[arg(long = "program", value_name = "PATH")]
    own: Vec<PathBuf>,
    /// Timer interrupts per second of guest time; 0 = no timer (cooperative multitasking: only
    /// system calls and faults return the CPU to the kernel).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TIMER_HZ,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    timer_hz: u32,
    /// How the LAPIC timer makes its ticks.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = TimerMode::Periodic)]
    timer_mode: TimerMode,
    /// Timer ticks a process may run before another ready process gets the CPU.
    #[arg(long, value_name = "TICKS", default_value_t = DEFAULT_SLICE,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    slice: u32,
}

/// The LAPIC timer's modes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TimerMode {
    /// The LAPIC counts down and reloads by itself.
    Periodic,
    /// The kernel arms each tick as a TSC deadline (falls back to periodic, saying so, where
    /// the CPU lacks it).
    Deadline,
}

impl ProgramArgs {
    /// The initrd and the full kernel command line (program words, then `extra`).
    fn prepare(&self, extra: &str) -> Result<(Vec<u8>, String), lde::initrd::Error> {
        let own = self.own.iter().map(|p| lde::initrd::read_program(p)).collect::<Result<Vec<_>, _>>()?;
        let programs = lde::initrd::prepare(&self.programs, own)?;
        let mode = match self.timer_mode {
            TimerMode::Periodic => "periodic",
            TimerMode::Deadline => "deadline",
        };
        let timer = format!(
            "{}={} {}={mode} {}={}",
            keys::TIMER_HZ_KEY,
            self.timer_hz,
            keys::TIMER_MODE_KEY,
            keys::SLICE_KEY,
            self.slice
        );
        let cmdline = [programs.cmdline.as_str(), &timer, extra.trim()].join(" ").trim().to_string();
        Ok((programs.initrd, cmdline))
    }
}

/// Prints an initrd error and returns its exit code.
fn initrd_error(e: lde::initrd::Error) -> ExitCode {
    eprintln!("lde: error: {}", chain(&e));
    ExitCode::from(match e {
        lde::initrd::Error::Read(..) => code::BAD_IMAGE,
        _ => code::USAGE,
    })
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    programs: ProgramArgs,
    /// List the built-in programs and exit.
    #[arg(long)]
    list: bool,
    /// Show a live table of the kernel's counters while the guest runs (on a terminal it is
    /// redrawn in place with the tail of the guest's output; piped, one line a second).
    #[arg(long)]
    watch: bool,
    /// Serve the live counters as JSON on this Unix socket (read them with `lde stats PATH`).
    #[arg(long, value_name = "PATH")]
    api_sock: Option<PathBuf>,
    /// Write the full report of the run as JSON (schema: docs/report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Draw the run as an SVG timeline: one lane per process, ticks, system calls, faults.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, short = 'm', value_name = "MIB", default_value_t = layout::MEM_DEFAULT_MIB,
          value_parser = clap::value_parser!(u64).range(layout::MEM_MIN_MIB..=layout::MEM_MAX_MIB))]
    mem: u64,
    /// Stop the guest if it has not shut down after SECS seconds (fractions allowed); exit 124.
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// Boot this kernel ELF (with a PVH entry note) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Extra words for the kernel command line (e.g. "lde.test=panic").
    #[arg(long, value_name = "WORDS", default_value = "")]
    cmdline: String,
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    kvm_device: PathBuf,
    /// Print only the guest's output and errors: no host line, no timing summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!("'{text}' must be more than 0 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let started = Instant::now();
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("LDE_LOG", "warn")).format_target(false).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Run(args) => run(args, started),
        Command::Export(args) => export(args),
        Command::Probe(args) => probe(args, started),
        Command::Stats(args) => stats(args),
        Command::Bench(args) => bench(args),
    }
}

fn export(args: ExportArgs) -> ExitCode {
    let (initrd, cmdline) = match args.programs.prepare(&args.cmdline) {
        Ok(p) => p,
        Err(e) => return initrd_error(e),
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = args.dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let result = std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))
        .and_then(|()| write("kernel.elf", lde::guest::KERNEL))
        .and_then(|()| write("initrd.cpio", &initrd))
        .and_then(|()| write("cmdline", cmdline.as_bytes()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lde: error: {e}");
            ExitCode::from(code::VMM_FAILED)
        }
    }
}

/// Prints clap's help or version as is, and a usage error as one line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(code::USAGE)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("lde: {first} (see 'lde --help')");
    ExitCode::from(code::USAGE)
}

fn run(args: RunArgs, started: Instant) -> ExitCode {
    if args.list {
        let width = lde::guest::PROGRAMS.iter().map(|p| p.name.len()).max().unwrap_or(0);
        for p in lde::guest::PROGRAMS {
            println!("{:width$}  {}", p.name, p.about);
        }
        return ExitCode::SUCCESS;
    }
    let (initrd, cmdline) = match args.programs.prepare(&args.cmdline) {
        Ok(p) => p,
        Err(e) => return initrd_error(e),
    };
    // The output files are created before the guest runs, so that a bad path is said at once
    // rather than after a long run whose results would then be lost.
    let create = |path: &Option<PathBuf>, what: &str| match path {
        None => Ok(None),
        Some(p) => {
            std::fs::File::create(p).map(Some).map_err(|e| format!("cannot write the {what} {}: {e}", p.display()))
        }
    };
    let (report_file, timeline_file) = match (create(&args.report, "report"), create(&args.timeline, "timeline")) {
        (Ok(r), Ok(t)) => (r, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lde: error: {e}");
            return ExitCode::from(code::VMM_FAILED);
        }
    };
    let host = host::detect();
    let host_line = format!("lde: host: {} on {}", host.kvm, host.cpu_model);
    // With --watch on a terminal, the guest's output is shown under the table and printed in
    // full when the run ends.
    let watch_terminal = args.watch && std::io::stderr().is_terminal();
    let captured = lde::devices::serial::SharedBuffer::default();
    let console: Box<dyn std::io::Write + Send> =
        if watch_terminal { Box::new(captured.clone()) } else { Box::new(std::io::stdout()) };
    let observer = match (args.watch, watch_terminal) {
        (false, _) => None,
        (true, true) => Some(lde::observe::watch::terminal(host.kvm.slug(), captured.clone())),
        (true, false) => Some(lde::observe::watch::piped()),
    };
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
        console,
        input: Some(libc::STDIN_FILENO),
        started,
        host,
    };
    let report = match lde::prepare(config).and_then(|vm| {
        if !args.quiet {
            eprintln!("{host_line}");
        }
        // Keystrokes reach the guest one at a time; restored when the guard drops.
        let _raw = lde::terminal::RawMode::enable(libc::STDIN_FILENO);
        vm.run()
    }) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("lde: error: {}", chain(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    match &report.outcome {
        Outcome::GuestExit(_) => {}
        Outcome::Crashed { crash, registers } => eprint!("lde: guest crashed: {crash}\n{registers}"),
        Outcome::Timeout { after: t, held_by } => {
            eprintln!("lde: timeout: the guest was still running after {} s; stopped it: {held_by}", t.as_secs_f64())
        }
        Outcome::Interrupted(signal) => eprintln!("lde: interrupted by signal {signal}; stopped the guest"),
    }
    if watch_terminal {
        let _ = std::io::stdout().write_all(&captured.0.lock().expect("buffer lock poisoned"));
    }
    if let (Some(path), Some(mut file)) = (&args.report, report_file) {
        let text = serde_json::to_string_pretty(&report.report()).expect("the report serializes");
        if let Err(e) = file.write_all((text + "\n").as_bytes()) {
            eprintln!("lde: error: cannot write the report {}: {e}", path.display());
            return ExitCode::from(code::VMM_FAILED);
        }
    }
    if let (Some(path), Some(file)) = (&args.timeline, timeline_file) {
        let written = match &report.recorder {
            Some(recorder) => {
                let title = format!("lde run on {} ({})", report.host.cpu_model, report.host.kvm.slug());
                lde::observe::timeline::write(recorder, &title, file).map_err(|e| e.to_string())
            }
            None => Err("the kernel's counters could not be read".to_string()),
        };
        if let Err(e) = written {
            eprintln!("lde: error: cannot write the timeline {}: {e}", path.display());
            return ExitCode::from(code::VMM_FAILED);
        }
    }
    if !args.quiet {
        if let (Some(page), Some(recorder)) = (report.stats(), &report.recorder) {
            for line in lde::observe::summary::lines(page, &recorder.processes(), report.host.kvm) {
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
    ExitCode::from(report.outcome.exit_code())
}

fn probe(args: ProbeArgs, started: Instant) -> ExitCode {
    if args.programs {
        lde::probe::PROGRAMS.iter().for_each(|p| println!("{p}"));
        return ExitCode::SUCCESS;
    }
    if let (Some(path), Some(host)) = (&args.transcript, &args.host_name) {
        return match std::fs::read(path) {
            Ok(bytes) => {
                println!("host: {host}");
                print_probe(&String::from_utf8_lossy(&bytes));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lde: error: cannot read the transcript {}: {e}", path.display());
                ExitCode::from(code::BAD_IMAGE)
            }
        };
    }
    let specs: Vec<String> = lde::probe::PROGRAMS.iter().map(|s| s.to_string()).collect();
    let programs = match lde::initrd::prepare(&specs, Vec::new()) {
        Ok(p) => p,
        Err(e) => return initrd_error(e),
    };
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
    let report = match lde::run(config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("lde: error: {}", chain(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    let text = String::from_utf8_lossy(&transcript.0.lock().expect("transcript lock")).into_owned();
    println!("host: {host_line}");
    if let Outcome::Crashed { crash, registers } = &report.outcome {
        println!("the guest crashed during the probe: {crash}\n{registers}");
        println!("guest output:\n{text}");
        return ExitCode::from(code::GUEST_CRASHED);
    }
    print_probe(&text);
    ExitCode::SUCCESS
}

fn stats(args: StatsArgs) -> ExitCode {
    use std::io::Read;
    let mut text = String::new();
    let read = std::os::unix::net::UnixStream::connect(&args.socket).and_then(|mut s| s.read_to_string(&mut text));
    if let Err(e) = read {
        eprintln!(
            "lde: error: cannot read {}: {e} (is `lde run --api-sock {}` running?)",
            args.socket.display(),
            args.socket.display()
        );
        return ExitCode::from(code::VMM_FAILED);
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).expect("a parsed value serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lde: error: {} did not answer with JSON: {e}", args.socket.display());
            ExitCode::from(code::VMM_FAILED)
        }
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    let baseline = match &args.baseline {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<lde::bench::BenchReport>(&text).map_err(|e| e.to_string()))
        {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("lde: error: cannot read the baseline {}: {e}", path.display());
                return ExitCode::from(code::USAGE);
            }
        },
    };
    if let Err(e) = lde::bench::select(&args.filter) {
        eprintln!("lde: error: {e}");
        return ExitCode::from(e.exit_code());
    }
    // Created before measuring, so that a bad path is said at once.
    let create = |path: &Option<PathBuf>| match path {
        None => Ok(None),
        Some(p) => std::fs::File::create(p).map(Some).map_err(|e| format!("cannot write {}: {e}", p.display())),
    };
    let (json_file, histogram_file) = match (create(&args.json), create(&args.histogram)) {
        (Ok(j), Ok(h)) => (j, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lde: error: {e}");
            return ExitCode::from(code::VMM_FAILED);
        }
    };
    let host = host::detect();
    if !args.quiet {
        eprintln!("lde bench: host: {} on {}", host.kvm, host.cpu_model);
    }
    let config = lde::bench::BenchConfig {
        filters: args.filter.clone(),
        kvm_device: args.kvm_device.clone(),
        host,
        quiet: args.quiet,
        timeout: Duration::from_secs(300),
    };
    let report = match lde::bench::run(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lde: error: {}", chain(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    print!("{}", lde::bench::table(&report));
    if let (Some(path), Some(mut file)) = (&args.json, json_file) {
        let text = serde_json::to_string_pretty(&report).expect("the bench report serializes");
        if let Err(e) = file.write_all((text + "\n").as_bytes()) {
            eprintln!("lde: error: cannot write {}: {e}", path.display());
            return ExitCode::from(code::VMM_FAILED);
        }
    }
    if let (Some(path), Some(file)) = (&args.histogram, histogram_file) {
        if let Err(e) = svg::write(file, &lde::bench::histogram_svg(&report)) {
            eprintln!("lde: error: cannot write {}: {e}", path.display());
            return ExitCode::from(code::VMM_FAILED);
        }
    }
    if let Some(baseline) = &baseline {
        let worse = lde::bench::regressions(&report, baseline, args.max_regression);
        for r in &worse {
            println!(
                "regression: {} median {} cycles, baseline {} (+{:.1}% > {}%)",
                r.name, r.now, r.baseline, r.percent, args.max_regression
            );
        }
        if !worse.is_empty() {
            return ExitCode::from(1);
        }
        println!("no median got more than {}% worse than the baseline", args.max_regression);
    }
    ExitCode::SUCCESS
}

fn print_probe(transcript: &str) {
    let rows = lde::probe::parse(transcript);
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!("{:width$}  delivery", "door / trap");
    for row in rows {
        println!("{:width$}  {}", row.what, row.delivery);
    }
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
