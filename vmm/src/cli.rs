//! The `lde` command line as clap sees it: the subcommands, their flags and help texts, and how
//! a usage error is shown. No behaviour: each subcommand runs in `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use lde::layout;
use lde_abi::cmdline::{DEFAULT_SLICE, DEFAULT_TIMER_HZ};
use lde_abi::exit_code as code;

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
  130   stopped by a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT, ...)
  137   GDB's kill command stopped the guest (run --gdb)
  141   the reader of lde's output went away (a closed pipe)

Input files are read only if they are regular files: a --kernel of at most 64 MiB, each
--program of at most 16 MiB. The kernel command line holds at most 4095 bytes.";

/// Limited direct execution, on real hardware virtualization.
///
/// Boots the lde guest kernel in a KVM virtual machine, forwards its serial console to this
/// terminal, and exits with the guest's exit code.
#[derive(Parser)]
#[command(name = "lde", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Boot the guest kernel, run the programs in ring 3, and exit with the kernel's code.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Write the kernel, the initrd and the command line `lde run` would boot to DIR.
    ///
    /// Writes DIR/kernel.elf, DIR/initrd.cpio and DIR/cmdline: what scripts/qemu.sh boots; and
    /// for GDB the same kernel with its debug information, DIR/kernel.debug, and each built-in
    /// program's, DIR/programs/NAME.debug.
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
    /// and two host references), and what booting costs.
    ///
    /// Prints a table of min, median and p99 in TSC cycles and ns, with the path each operation
    /// took (architectural or recovered) and the host's facts. Where KVM emulates guest ring 0
    /// (PVM) it also counts the kernel's emulated instructions (KVM's insn_emulation) per
    /// operation for syscall-null, int80-null, timer-tick and switch-cr3 (elsewhere: n/a). The
    /// boot rows (boot-empty: nothing to run; boot-hello) boot several times in turn and give
    /// emulated instructions, VM exits to lde and wall time at the kernel's banner, its first
    /// entry to ring 3 and shutdown. Exits 1 when --baseline is given and a median got worse
    /// than --max-regression allows, or when --insn-baseline is given and an instruction count
    /// grew beyond its margin or fell far below it (a stale baseline).
    Bench(BenchArgs),
    /// Print a shell completion script for lde.
    ///
    /// For example: `lde completions bash > ~/.local/share/bash-completion/completions/lde`.
    Completions(CompletionsArgs),
    /// Print lde's manual page (roff).
    ///
    /// For example: `lde man > ~/.local/share/man/man1/lde.1`, then `man lde`.
    Man,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Write the results as JSON (the same form --baseline reads).
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// Draw a histogram per measurement as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub histogram: Option<PathBuf>,
    /// Compare medians with an earlier `--json` file.
    #[arg(long, value_name = "FILE.json")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: the largest slowdown of a median, in percent, that still passes.
    #[arg(long, value_name = "PCT", default_value_t = 10.0, requires = "baseline")]
    pub max_regression: f64,
    /// Run only the measurements whose name contains NAME (repeatable); boot rows: boot-floor, -empty, -hello.
    #[arg(long, value_name = "NAME")]
    pub filter: Vec<String>,
    /// Only the instruction counts (per operation and the boot rows), no cycle measurement: a
    /// few seconds.
    #[arg(long)]
    pub insns: bool,
    /// Boots of each boot row, in turn (the wall times are their medians), 1 to 101.
    #[arg(long, value_name = "N", default_value_t = lde::bench::DEFAULT_BOOTS,
          value_parser = clap::value_parser!(u32).range(1..=101))]
    pub boots: u32,
    /// Check the instruction counts against a baseline written by --write-insn-baseline for
    /// this kind of host: exits 1 when one grew by more than 2 % (or twice the spread of its
    /// boots; per operation: or 3 instructions) or, where it is exact, fell more than 10 %
    /// below it (a stale baseline).
    #[arg(long, value_name = "FILE.json")]
    pub insn_baseline: Option<PathBuf>,
    /// Write the instruction counts measured as a baseline for this kind of host (refused
    /// where KVM does not count the kernel's instructions); on an idle machine.
    #[arg(long, value_name = "FILE.json")]
    pub write_insn_baseline: Option<PathBuf>,
    /// vCPUs, 1 to 8: with 2 or more the `ipi-roundtrip` and `tlb-shootdown` rows are added (the
    /// kernel, booted on two vCPUs, times IPIs and one-page TLB shootdowns from its first
    /// processor to its second).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub cpus: u8,
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
    /// No progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Measure nothing: print the --json files of several hosts side by side (each row's
    /// median in cycles and ns per host, labelled by kind of KVM and CPU).
    #[arg(long, value_name = "FILE.json", num_args = 2..,
          conflicts_with_all = ["json", "histogram", "baseline", "filter", "insns", "insn_baseline", "write_insn_baseline"])]
    pub compare: Vec<PathBuf>,
    /// With --compare: also draw the comparison as SVG.
    #[arg(long, value_name = "FILE.svg", requires = "compare")]
    pub compare_svg: Option<PathBuf>,
    /// Boot the `boot-floor` row's bare VM once and exit (scripts/bench-boot.sh times the process).
    #[arg(long, hide = true, conflicts_with_all = ["json", "histogram", "baseline", "filter", "insns", "compare"])]
    pub floor_once: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    /// The socket `lde run --api-sock` listens on.
    #[arg(value_name = "PATH")]
    pub socket: PathBuf,
    /// Give up if the answer has not come after SECS seconds.
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_seconds, default_value = "5")]
    pub timeout: Duration,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
    /// Stop the probe if it has not finished after SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "60")]
    pub timeout: Duration,
    /// Do not boot: read the serial transcript of a probe run from FILE (scripts/qemu.sh
    /// --probe uses this for QEMU), naming its host HOST.
    #[arg(long, value_name = "FILE", requires = "host_name")]
    pub transcript: Option<PathBuf>,
    /// The host the transcript came from.
    #[arg(long = "host", value_name = "HOST")]
    pub host_name: Option<String>,
    /// Print the programs a probe runs, one per line, and exit.
    #[arg(long)]
    pub programs: bool,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub programs: ProgramArgs,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Extra words for the kernel command line.
    #[arg(long, value_name = "WORDS", default_value = "")]
    pub cmdline: String,
}

/// Which programs to run (shared by `run` and `export`).
#[derive(Args)]
pub struct ProgramArgs {
    /// Programs to run, each a built-in name with its arguments as one word ('counter 5000');
    /// none: a short demo (hello), unless --none. `lde run --list` lists the built-in programs.
    #[arg(value_name = "PROGRAM")]
    pub programs: Vec<String>,
    /// Run no program at all: the kernel boots, says it has nothing to run and shuts down with
    /// code 0 (an empty initrd, no `lde.run=` word). Not with PROGRAM or --program.
    #[arg(long, conflicts_with_all = ["programs", "own"])]
    pub none: bool,
    /// Also run this ELF file of your own: static, not position-independent, linked at
    /// 0x8000000000 (examples/ in the source has a C and a Rust recipe). Named after its file
    /// name; repeatable.
    #[arg(long = "program", value_name = "PATH")]
    pub own: Vec<PathBuf>,
    /// Timer interrupts per second of guest time, 0 to 10000; 0 = no timer (cooperative
    /// multitasking: only system calls and faults return the CPU to the kernel).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TIMER_HZ,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub timer_hz: u32,
    /// How the LAPIC timer makes its ticks.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = TimerMode::Periodic)]
    pub timer_mode: TimerMode,
    /// Timer ticks a process may run before another ready process gets the CPU, 1 to 1000.
    #[arg(long, value_name = "TICKS", default_value_t = DEFAULT_SLICE,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub slice: u32,
    /// Have the kernel print, besides its fixed lines, an `acct` line per process and `stats:`
    /// lines at shutdown (lde.verbose=1): the counters lde reads from the stats page, as text.
    /// Off by default: formatting them costs the kernel ~20,000 instructions.
    #[arg(long)]
    pub kernel_stats: bool,
}

/// The LAPIC timer's modes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TimerMode {
    /// The LAPIC counts down and reloads by itself.
    Periodic,
    /// The kernel arms each tick as a TSC deadline (falls back to periodic, saying so, where
    /// the CPU lacks it).
    Deadline,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub programs: ProgramArgs,
    /// List the built-in programs and exit.
    #[arg(long)]
    pub list: bool,
    /// With --list: as JSON (an array of {name, about}).
    #[arg(long, requires = "list")]
    pub json: bool,
    /// Show a live table of the kernel's counters while the guest runs (on a terminal it is
    /// redrawn in place with the tail of the guest's output; piped, one line a second).
    #[arg(long)]
    pub watch: bool,
    /// Serve the live counters as JSON on this Unix socket (read them with `lde stats PATH`).
    #[arg(long, value_name = "PATH")]
    pub api_sock: Option<PathBuf>,
    /// Write the full report of the run as JSON (schema: docs/report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Draw the run as an SVG timeline: one lane per process, ticks, system calls, faults.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
    /// Write the run as Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) or
    /// chrome://tracing: each process's states (running, ready, blocked and why) with their
    /// causes, its system calls, and the CPU's track.
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Print every change of a process's state at the end, one line each on stderr:
    /// `lde: 12.301 ms  pid 2 counter  running -> ready  (timer-preempt)`.
    #[arg(long)]
    pub states: bool,
    /// Guest memory in MiB, 16 to 3072.
    #[arg(long, short = 'm', value_name = "MIB", default_value_t = layout::MEM_DEFAULT_MIB,
          value_parser = clap::value_parser!(u64).range(layout::MEM_MIN_MIB..=layout::MEM_MAX_MIB))]
    pub mem: u64,
    /// Stop the guest if it has not shut down after SECS seconds (fractions allowed); exit 124.
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
    /// Boot this kernel ELF (with a PVH entry note) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// vCPUs, 1 to 8: the first boots the kernel; the others wait, as processors do, until the
    /// kernel starts them with INIT and SIPI (lde's kernel does when N > 1: lde passes lde.cpus=N;
    /// then all run processes, one run queue; a run says which were never started); under --gdb each is a GDB thread.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub cpus: u8,
    /// A raw disk image (whole 512-byte sectors) as a virtio-blk device: read and written in
    /// place, locked against a second lde, flushed when the run ends; FILE,ro for a read-only
    /// disk. Repeatable, up to 4 (disk 0 is the first); a file that cannot be a disk exits 72.
    #[arg(long = "disk", value_name = "FILE[,ro]")]
    pub disks: Vec<lde::devices::virtio::DiskSpec>,
    /// Extra words for the kernel command line (e.g. "lde.test=panic").
    #[arg(long, value_name = "WORDS", default_value = "")]
    pub cmdline: String,
    /// The KVM device to open.
    #[arg(long, value_name = "PATH", default_value = "/dev/kvm")]
    pub kvm_device: PathBuf,
    /// Print only the guest's output and errors: no host line, no timing summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Run without the seccomp filters that confine the vCPU and event-loop threads to the
    /// system calls they need (for debugging lde itself).
    #[arg(long)]
    pub no_seccomp: bool,
    /// Wait for GDB on ADDR (IP:PORT, default 127.0.0.1:1234, port 0 = any free port; or a Unix
    /// socket path, with a '/') before the kernel's first instruction, and serve it: one thread
    /// per vCPU (all stop together), registers, memory through the guest's page tables, continue,
    /// step, Ctrl-C, breakpoints and watchpoints (at most four: all live in DR0-DR3). `detach`
    /// lets the guest run on; GDB's `kill` stops it (exit 137). Time stopped in GDB is hidden
    /// from the guest where KVM can move the vCPUs' TSC offsets (lde says which when GDB
    /// attaches), but counts towards --timeout. The vCPU threads' seccomp filter then also allows
    /// the GDB socket and the KVM debugging requests. Give ADDR as --gdb=ADDR before a PROGRAM.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = lde::gdb::DEFAULT_ADDR)]
    pub gdb: Option<lde::gdb::Addr>,
    /// Test hook: the named thread attempts a system call its filter forbids.
    #[arg(long, value_name = "THREAD", value_enum, hide = true)]
    pub seccomp_check: Option<SeccompCheck>,
}

/// The threads `--seccomp-check` can test.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SeccompCheck {
    Vcpu,
    Events,
}

/// The shortest timeout: a shorter one would round to "no timeout" somewhere.
const MIN_TIMEOUT_SECS: f64 = 0.001;

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(MIN_TIMEOUT_SECS..=1e9).contains(&secs) {
        return Err(format!("'{text}' must be from {MIN_TIMEOUT_SECS} to 1e9 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints clap's help or version as is, and a usage error as one line: clap's whole message
/// (what is wrong, the missing arguments, the possible values, its tip), without the usage
/// block, pointing at the subcommand's --help.
pub fn usage_error(e: clap::Error) -> ExitCode {
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    eprintln!("lde: {}", usage_line(&e.render().to_string(), &args));
    ExitCode::from(code::USAGE)
}

/// clap's rendered error as one line, ending with where to read more.
fn usage_line(rendered: &str, args: &[String]) -> String {
    let words: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = words.join(" ");
    if let Some(rest) = text.strip_prefix("error: ") {
        text = rest.to_string();
    }
    if text.is_empty() {
        text = "invalid command line".to_string();
    }
    let text = text.replace(" tip:", "; tip:");
    let command = Cli::command();
    let sub = args.iter().find_map(|a| command.get_subcommands().find(|s| s.get_name() == a));
    match sub {
        Some(sub) => format!("{text} (see 'lde {} --help')", sub.get_name()),
        None => format!("{text} (see 'lde --help')"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        let e = Cli::try_parse_from(std::iter::once("lde").chain(args.iter().copied())).err().expect("a usage error");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        usage_line(&e.render().to_string(), &args)
    }

    #[test]
    fn help_states_the_ranges_clap_enforces() {
        let mut command = Cli::command();
        let run = command.find_subcommand_mut("run").expect("run exists").render_long_help().to_string();
        let mem = format!("{} to {}", layout::MEM_MIN_MIB, layout::MEM_MAX_MIB);
        for range in [mem.as_str(), "0 to 10000", "1 to 1000"] {
            assert!(run.contains(range), "{range} in:\n{run}");
        }
        let export = command.find_subcommand_mut("export").expect("export exists").render_long_help().to_string();
        assert!(!export.contains("See --list") && export.contains("`lde run --list`"), "{export}");
    }

    #[test]
    fn bench_help_states_the_instruction_margins() {
        use lde::bench::insn_baseline::{GROWTH_PERCENT, PER_OP_SLACK, STALE_PERCENT};
        let mut command = Cli::command();
        let help = command.find_subcommand_mut("bench").expect("bench exists").render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for margin in [
            format!("grew by more than {GROWTH_PERCENT} %"),
            format!("or {PER_OP_SLACK} instructions"),
            format!("fell more than {STALE_PERCENT} % below"),
        ] {
            assert!(help.contains(&margin), "{margin} in:\n{help}");
        }
    }

    #[test]
    fn usage_errors_keep_their_point() {
        assert_eq!(
            line(&["stats"]),
            "the following required arguments were not provided: <PATH> (see 'lde stats --help')"
        );
        assert!(line(&["export"]).contains("--dir <DIR> (see 'lde export --help')"), "{}", line(&["export"]));
        assert!(line(&["bench", "--max-regression", "5"]).contains("--baseline <FILE.json>"));
        assert!(line(&["run", "--timer-mode", "foo"]).contains("[possible values: periodic, deadline]"));
        assert!(line(&["run", "--bogus"]).starts_with("unexpected argument '--bogus' found"));
    }

    #[test]
    fn the_help_states_the_limits_lde_applies() {
        let text = EXIT_CODES.replace('\n', " ");
        assert!(text.contains(&format!("--kernel of at most {} MiB", lde::files::KERNEL_MAX_SIZE >> 20)), "{text}");
        assert!(text.contains(&format!("--program of at most {} MiB", lde::files::PROGRAM_MAX_SIZE >> 20)), "{text}");
        assert!(text.contains(&format!("at most {} bytes", lde::boot::CMDLINE_MAX_LEN)), "{text}");
        assert!(text.contains(&format!("{}   the reader", code::OUTPUT_CLOSED)), "{text}");
    }

    #[test]
    fn a_timeout_too_short_to_mean_anything_is_refused() {
        assert!(parse_seconds("1e-10").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert_eq!(parse_seconds("0.001").unwrap(), Duration::from_millis(1));
    }
}
