//! What one run is asked to do: [`RunConfig`], filled in by the command line, `lde probe` and
//! `lde bench`.

use std::io::Write;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::devices::virtio::DiskSpec;
use crate::host::HostInfo;
use crate::layout;
use crate::observe::monitor::Observer;
use crate::seccomp::Thread;
use crate::vcpu::VmExitHook;

/// What to run and how.
pub struct RunConfig {
    /// The kernel ELF; `None` runs the embedded one.
    pub kernel: Option<PathBuf>,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// The kernel command line.
    pub cmdline: String,
    /// The initrd module, if any.
    pub initrd: Option<Vec<u8>>,
    /// Ends the run if the guest has not shut down by then.
    pub timeout: Option<Duration>,
    /// The KVM device node.
    pub kvm_device: PathBuf,
    /// Where guest serial output goes.
    pub console: Box<dyn Write + Send>,
    /// Forward this fd (normally stdin) to the guest's serial port.
    pub input: Option<RawFd>,
    /// When the lde process started, for the boot-time report.
    pub started: Instant,
    /// The host, as [`crate::host::detect`] found it.
    pub host: HostInfo,
    /// Serve the live report as JSON on this Unix socket.
    pub api_sock: Option<PathBuf>,
    /// Called after every read of the stats page while the guest runs.
    pub observer: Option<Observer>,
    /// Called by the vCPU thread after every VM exit (`lde bench` times port writes with it).
    pub exit_hook: Option<Box<dyn VmExitHook>>,
    /// Confine the vCPU and event-loop threads with seccomp filters (see [`crate::seccomp`]).
    pub seccomp: bool,
    /// Test hook: this thread attempts a call its filter forbids once the run is under way.
    pub seccomp_check: Option<Thread>,
    /// Disk images (`--disk`), disk 0 first.
    pub disks: Vec<DiskSpec>,
    /// vCPUs (`--cpus`): the first boots the kernel, the others wait for it to start them.
    pub cpus: u8,
}

impl RunConfig {
    /// A run of the built-in kernel with `cmdline` and `initrd` whose serial output goes only to
    /// `console` (no input, no live observers): what `lde probe` and `lde bench` boot.
    pub fn unattended(
        cmdline: String,
        initrd: Vec<u8>,
        console: Box<dyn Write + Send>,
        timeout: Duration,
        kvm_device: PathBuf,
        host: HostInfo,
    ) -> RunConfig {
        RunConfig {
            kernel: None,
            mem_mib: layout::MEM_DEFAULT_MIB,
            cmdline,
            initrd: Some(initrd),
            timeout: Some(timeout),
            kvm_device,
            console,
            input: None,
            started: Instant::now(),
            host,
            api_sock: None,
            observer: None,
            exit_hook: None,
            seccomp: true,
            seccomp_check: None,
            disks: Vec::new(),
            cpus: 1,
        }
    }
}
