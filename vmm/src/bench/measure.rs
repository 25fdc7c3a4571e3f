//! Taking the samples: boots the benchmark guest (and reads its `bench result` lines and
//! door counters), times KVM_RUN round trips of bench-port writes with a VM-exit hook, and samples
//! the host's own null system call.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lde_abi::ports::BENCH_PORT;

use std::time::Instant;

use super::{BenchConfig, Doors, Error};
use crate::devices::serial::SharedBuffer;
use crate::devices::virtio::DiskSpec;
use crate::initrd::Programs;
use crate::vcpu::VmExitHook;
use crate::{Outcome, RunConfig, RunReport};

fn host_rdtsc() -> u64 {
    // SAFETY: lfence and rdtsc only order and read.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        let t = core::arch::x86_64::_rdtsc();
        core::arch::x86_64::_mm_lfence();
        t
    }
}

/// The host reference: a null Linux system call, sampled like the guest's measurements.
pub(super) fn host_syscall_samples() -> Vec<u64> {
    let once = |k: u64| {
        let t0 = host_rdtsc();
        for _ in 0..k {
            // SAFETY: getppid has no arguments and no side effects.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        host_rdtsc() - t0
    };
    let mut k = 1;
    while k < (1 << 20) && once(k) < 200_000 {
        k *= 2;
    }
    (0..3).for_each(|_| {
        once(k);
    });
    (0..1000).map(|_| once(k) / k).collect()
}

/// Durations of KVM_RUN calls that ended in a bench-port write, as lde sees them: guest entry,
/// the guest's `out`, the exit back to lde (host TSC cycles). Installed as the run's exit hook.
#[derive(Clone, Default)]
struct BenchPortRoundTrips(Arc<Mutex<Vec<u64>>>);

impl BenchPortRoundTrips {
    /// Most samples kept.
    const MAX: usize = 100_000;

    /// The samples so far.
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut self.0.lock().expect("samples lock poisoned"))
    }
}

impl VmExitHook for BenchPortRoundTrips {
    fn after_exit(&mut self, exit: &kvm_ioctls::VcpuExit<'_>, cycles: u64) {
        if matches!(exit, kvm_ioctls::VcpuExit::IoOut(BENCH_PORT, _)) {
            let mut v = self.0.lock().expect("samples lock poisoned");
            if v.len() < Self::MAX {
                v.push(cycles);
            }
        }
    }
}

/// Echoes the guest's `bench: measuring X` lines as progress on stderr, and keeps everything.
struct Progress {
    buffer: SharedBuffer,
    line: Vec<u8>,
    /// The rows of the table being made; `done` counts those measured.
    rows: Vec<&'static str>,
    done: Arc<Mutex<usize>>,
    quiet: bool,
}

impl Write for Progress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.write_all(buf)?;
        for &b in buf {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_string();
                if let Some(name) = line.strip_prefix("bench: measuring ") {
                    // kvm-run is lde's view of port-write's exits: the two rows come together.
                    let with_kvm_run = name == "port-write" && self.rows.contains(&"kvm-run");
                    let rows = usize::from(self.rows.contains(&name)) + usize::from(with_kvm_run);
                    let mut done = self.done.lock().expect("progress lock poisoned");
                    *done += rows;
                    if !self.quiet {
                        let also = if with_kvm_run { " and kvm-run" } else { "" };
                        eprintln!("lde: bench [{}/{}] {name}{also}", *done, self.rows.len());
                    }
                }
                self.line.clear();
            } else {
                self.line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one boot of the benchmark guest left.
pub(super) struct GuestRun {
    pub(super) transcript: String,
    pub(super) doors: Option<Doors>,
    pub(super) kvm_run: Vec<u64>,
    pub(super) tsc_khz: Option<u32>,
    /// The scratch disk's reads and lde's MMIO exits over the run (the `disk-read-4k` row).
    pub(super) disk: Option<DiskExits>,
}

/// What a run with the scratch disk did on the host's side.
#[derive(Clone, Copy, Debug)]
pub(super) struct DiskExits {
    /// Requests the device served.
    pub(super) requests: u64,
    /// MMIO exits lde handled in the whole run (the device's set-up included).
    pub(super) mmio_exits: u64,
    /// Whether KVM took the queue notifications by ioeventfd.
    pub(super) ioeventfd: bool,
}

/// One boot of the built-in kernel for `lde bench`.
pub(super) struct Boot<'a> {
    pub(super) programs: Programs,
    /// The timer rate (0: no timer).
    pub(super) hz: u32,
    /// More kernel command-line words.
    pub(super) extra: &'a str,
    /// Where the serial output goes; it must also reach `transcript`.
    pub(super) console: Box<dyn Write + Send>,
    pub(super) transcript: SharedBuffer,
    pub(super) hook: Option<Box<dyn VmExitHook>>,
    /// When the run starts (what a VM-exit hook measures from).
    pub(super) started: Instant,
    /// Disk images for the guest.
    pub(super) disks: Vec<crate::devices::virtio::DiskSpec>,
    /// vCPUs (above 1, lde passes `lde.cpus`).
    pub(super) cpus: u8,
}

impl Boot<'_> {
    /// A boot whose serial output is only kept.
    pub(super) fn quiet(programs: Programs, hz: u32) -> Boot<'static> {
        let transcript = SharedBuffer::default();
        let console = Box::new(transcript.clone());
        let started = Instant::now();
        Boot { programs, hz, extra: "", console, transcript, hook: None, started, disks: Vec::new(), cpus: 1 }
    }

    /// Runs it; the guest must shut down with code 0. Returns the run and its transcript.
    pub(super) fn run(self, config: &BenchConfig) -> Result<(RunReport, String), Error> {
        let cmdline =
            format!("{} lde.hz={} lde.timer=periodic lde.slice=1 {}", self.programs.cmdline, self.hz, self.extra);
        let mut run_config = RunConfig::unattended(
            cmdline.trim().to_string(),
            self.programs.initrd,
            self.console,
            config.timeout,
            config.kvm_device.clone(),
            config.host.clone(),
        );
        run_config.started = self.started;
        run_config.exit_hook = self.hook;
        run_config.disks = self.disks;
        run_config.cpus = self.cpus;
        let run = crate::run(run_config)?;
        let transcript = String::from_utf8_lossy(&self.transcript.0.lock().expect("buffer lock poisoned")).into_owned();
        match &run.outcome {
            Outcome::Shutdown(0) => Ok((run, transcript)),
            other => {
                let tail: Vec<&str> = transcript.lines().rev().take(5).collect();
                Err(Error::Guest(format!(
                    "{other:?}; last output: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )))
            }
        }
    }
}

/// Boots the guest once with `bench NAMES…` at `hz`.
pub(super) fn guest_run(
    names: &[&str],
    hz: u32,
    config: &BenchConfig,
    rows: &[&'static str],
    done: &Arc<Mutex<usize>>,
) -> Result<GuestRun, Error> {
    let spec = std::iter::once("bench").chain(names.iter().copied()).collect::<Vec<_>>().join(" ");
    let programs = crate::initrd::prepare(&[spec], Vec::new())?;
    let transcript = SharedBuffer::default();
    let progress = Progress {
        buffer: transcript.clone(),
        line: Vec::new(),
        rows: rows.to_vec(),
        done: done.clone(),
        quiet: config.quiet,
    };
    let samples = BenchPortRoundTrips::default();
    // The disk row reads a scratch image: sparse, never written, gone with the run.
    let scratch = match names.contains(&"disk-read-4k") {
        true => Some(scratch_disk().map_err(|e| Error::Guest(format!("cannot make the scratch disk: {e}")))?),
        false => None,
    };
    let boot = Boot {
        console: Box::new(progress),
        transcript,
        hook: Some(Box::new(samples.clone())),
        disks: scratch.iter().map(|f| DiskSpec { path: f.path().to_path_buf(), read_only: true }).collect(),
        ..Boot::quiet(programs, hz)
    };
    let (run, transcript) = boot.run(config)?;
    let doors = run.stats().map(|p| (p.syscall_arch, p.syscall_recovered, p.int80_arch, p.int80_recovered));
    let disk = run.disks.first().map(|d| DiskExits {
        requests: d.requests,
        mmio_exits: run.exits.mmio,
        ioeventfd: d.ioeventfd,
    });
    Ok(GuestRun { transcript, doors, kvm_run: samples.take(), tsc_khz: run.tsc_khz, disk })
}

/// A 1 MiB sparse image in the temporary folder.
fn scratch_disk() -> std::io::Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new().prefix("lde-bench-disk").suffix(".img").tempfile()?;
    file.as_file().set_len(1 << 20)?;
    Ok(file)
}
