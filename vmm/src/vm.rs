//! One run of a guest: open KVM, build the VM, boot the kernel, run the vCPU on its own thread
//! while the main thread's event loop forwards stdin and watches for signals, the timeout and
//! the vCPU's end.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use lde_abi::cmdline::TSC_KHZ_KEY;
use lde_abi::exit as code;
use lde_abi::ports::SERIAL_IRQ;
use lde_abi::stats::StatsPage;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};
use vmm_sys_util::timerfd::TimerFd;

use crate::boot;
use crate::devices::{new_serial, Devices, ExitPort, InputStatus, SerialDevice, SerialInput};
use crate::exit::{Crash, ExitCounts, ExitTotals};
use crate::host::HostInfo;
use crate::layout;
use crate::observe::monitor::{ApiError, ApiServer, Observer, Poller, Shared};
use crate::observe::recorder::Recorder;
use crate::observe::stats::StatsReader;
use crate::vcpu::{self, ExitHook, VcpuEnd};

/// Address KVM needs for its three-page TSS on Intel hosts (unused by the guest).
const KVM_TSS_ADDR: u64 = 0xfffb_d000;

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
    pub exit_hook: Option<Box<dyn ExitHook>>,
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
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest shut down through the exit port with this code.
    GuestExit(u32),
    /// The guest crashed.
    Crashed { crash: Crash, registers: String },
    /// `--timeout` expired; `held_by` says who had the CPU.
    Timeout { after: Duration, held_by: String },
    /// SIGINT or SIGTERM arrived.
    Interrupted(i32),
}

impl Outcome {
    /// The exit status of the lde process for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::GuestExit(c) => *c as u8,
            Outcome::Crashed { .. } => code::GUEST_CRASHED,
            Outcome::Timeout { .. } => code::TIMEOUT,
            Outcome::Interrupted(_) => code::INTERRUPTED,
        }
    }
}

/// Everything lde learned from one run.
pub struct RunReport {
    pub outcome: Outcome,
    pub host: HostInfo,
    pub tsc_khz: Option<u32>,
    /// From process start to the kernel's banner line.
    pub banner_after: Option<Duration>,
    /// From process start to the end of the run.
    pub ended_after: Duration,
    pub exits: ExitTotals,
    /// KVM's statistics of the vCPU at the end, where the host offers them.
    pub kvm_stats: Option<std::collections::BTreeMap<String, u64>>,
    pub serial_bytes: u64,
    /// What was read from the kernel's stats page, if it could be read.
    pub recorder: Option<Recorder>,
}

impl RunReport {
    /// The kernel's counters at the end of the run.
    pub fn stats(&self) -> Option<&StatsPage> {
        self.recorder.as_ref().and_then(|r| r.last.as_deref())
    }
}

/// Why lde could not run the guest at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist: KVM is not available here (load kvm_intel or kvm_amd, or enable nested virtualization for this VM)")]
    KvmMissing(PathBuf),
    #[error("no permission to open {0}: add your user to the kvm group (sudo usermod -aG kvm $USER) and log in again")]
    KvmPermission(PathBuf),
    #[error("cannot open {0}")]
    KvmOpen(PathBuf, #[source] io::Error),
    #[error("{0} is not a usable KVM device")]
    NotKvm(PathBuf, #[source] kvm_ioctls::Error),
    #[error("KVM lacks {0}, which lde needs")]
    KvmCapability(&'static str),
    #[error("cannot read the kernel {0}")]
    KernelRead(PathBuf, #[source] io::Error),
    #[error("cannot boot the kernel {0}")]
    Kernel(String, #[source] boot::Error),
    #[error("--mem {0} MiB is out of range: give {min} to {max}", min = layout::MEM_MIN_MIB, max = layout::MEM_MAX_MIB)]
    MemSize(u64),
    #[error("cannot allocate {0} MiB of guest memory")]
    Memory(u64, #[source] vm_memory::mmap::FromRangesError),
    #[error("cannot set up the VM: {0}")]
    Setup(&'static str, #[source] kvm_ioctls::Error),
    #[error("cannot set up the VMM: {0}")]
    Host(&'static str, #[source] io::Error),
    #[error("the vCPU failed")]
    VcpuRun(#[source] kvm_ioctls::Error),
    #[error("cannot serve the API socket")]
    Api(#[source] ApiError),
}

impl Error {
    /// The exit status of the lde process for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::KvmMissing(_)
            | Error::KvmPermission(_)
            | Error::KvmOpen(..)
            | Error::NotKvm(..)
            | Error::KvmCapability(_) => code::KVM_UNAVAILABLE,
            Error::KernelRead(..) | Error::Kernel(..) => code::BAD_IMAGE,
            Error::MemSize(_) => code::USAGE,
            Error::Memory(..) | Error::Setup(..) | Error::Host(..) | Error::VcpuRun(_) | Error::Api(_) => {
                code::VMM_FAILED
            }
        }
    }
}

/// Opens the KVM device, naming the fix when that fails.
pub fn open_kvm(path: &Path) -> Result<Kvm, Error> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::KvmMissing(path.to_owned()))?;
    let kvm = Kvm::new_with_path(&c_path).map_err(|e| match e.errno() {
        libc::ENOENT => Error::KvmMissing(path.to_owned()),
        libc::EACCES | libc::EPERM => Error::KvmPermission(path.to_owned()),
        _ => Error::KvmOpen(path.to_owned(), io::Error::from_raw_os_error(e.errno())),
    })?;
    let version = kvm.get_api_version();
    if version != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(Error::NotKvm(path.to_owned(), kvm_ioctls::Error::new(libc::ENOTTY)));
    }
    if !kvm.check_extension(kvm_ioctls::Cap::Irqchip) {
        return Err(Error::KvmCapability("an in-kernel irqchip (KVM_CAP_IRQCHIP)"));
    }
    Ok(kvm)
}

fn check_mem(mem_mib: u64) -> Result<u64, Error> {
    if !(layout::MEM_MIN_MIB..=layout::MEM_MAX_MIB).contains(&mem_mib) {
        return Err(Error::MemSize(mem_mib));
    }
    Ok(mem_mib << 20)
}

fn create_memory(vm: &VmFd, mem_size: u64) -> Result<GuestMemoryMmap, Error> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_size as usize)])
        .map_err(|e| Error::Memory(mem_size >> 20, e))?;
    for (slot, region) in mem.iter().enumerate() {
        let host_addr = mem.get_host_address(region.start_addr()).expect("the region's own start is mapped");
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
            flags: 0,
        };
        // SAFETY: the host mapping belongs to `mem`, which outlives the VM (both live until
        // `run` returns, and the vCPU thread is joined before that).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| Error::Setup("guest memory", e))?;
    }
    Ok(mem)
}

/// A VM built and loaded, its vCPU ready at the PVH entry.
pub struct Vm {
    // Field order is drop order: the vCPU and VM go before the memory they map.
    vcpu_fd: kvm_ioctls::VcpuFd,
    _vm: VmFd,
    _mem: GuestMemoryMmap,
    serial: Arc<Mutex<SerialDevice>>,
    api: Option<ApiServer>,
    shared: Option<Shared>,
    observer: Option<Observer>,
    exit_hook: Option<Box<dyn ExitHook>>,
    kvm_stats: Option<Arc<crate::observe::kvm_stats::KvmStats>>,
    exits: Arc<ExitCounts>,
    tsc_khz: Option<u32>,
    timeout: Option<Duration>,
    input: Option<RawFd>,
    started: Instant,
    host: HostInfo,
}

/// Runs the guest to its end: [`prepare`], then [`Vm::run`].
pub fn run(config: RunConfig) -> Result<RunReport, Error> {
    prepare(config)?.run()
}

/// Checks the configuration, opens KVM, builds the VM and loads the kernel.
///
/// Every mistake a user can make (memory size, kernel file, KVM access) is reported here,
/// before the guest runs.
pub fn prepare(config: RunConfig) -> Result<Vm, Error> {
    let mem_size = check_mem(config.mem_mib)?;
    let (kernel_name, kernel_image) = match &config.kernel {
        Some(path) => {
            (path.display().to_string(), std::fs::read(path).map_err(|e| Error::KernelRead(path.clone(), e))?)
        }
        None => ("(embedded)".to_string(), crate::guest::KERNEL.to_vec()),
    };
    boot::check_elf(&kernel_image).map_err(|e| Error::Kernel(kernel_name.clone(), e))?;

    let kvm = open_kvm(&config.kvm_device)?;
    let vm = kvm.create_vm().map_err(|e| Error::Setup("create the VM", e))?;
    vm.set_tss_address(KVM_TSS_ADDR as usize).map_err(|e| Error::Setup("TSS address", e))?;
    vm.create_irq_chip().map_err(|e| Error::Setup("in-kernel irqchip", e))?;
    let mem = create_memory(&vm, mem_size)?;
    let vcpu_fd = vm.create_vcpu(0).map_err(|e| Error::Setup("create the vCPU", e))?;
    let tsc_khz = vcpu_fd.get_tsc_khz().ok();
    // The kernel takes the TSC rate from KVM rather than measuring it (unless told otherwise).
    let mut cmdline = config.cmdline.clone();
    if let Some(khz) = tsc_khz.filter(|_| !cmdline.contains(TSC_KHZ_KEY)) {
        cmdline = format!("{cmdline} {TSC_KHZ_KEY}={khz}").trim().to_string();
    }
    let boot_entry = boot::load(&mem, mem_size, &kernel_image, &cmdline, config.initrd.as_deref())
        .map_err(|e| Error::Kernel(kernel_name, e))?;
    vcpu::setup_pvh(&kvm, &vcpu_fd, boot_entry).map_err(|e| Error::Setup("vCPU registers", e))?;

    let serial = new_serial(config.console).map_err(|e| Error::Host("serial eventfds", e))?;
    vm.register_irqfd(&serial.interrupt_evt().0, SERIAL_IRQ).map_err(|e| Error::Setup("serial irqfd", e))?;
    let serial = Arc::new(Mutex::new(serial));
    let stats = match StatsReader::new(mem.clone(), &kernel_image) {
        Ok(reader) => Some(reader),
        Err(e) => {
            log::warn!("no kernel counters for this run: {e}");
            None
        }
    };
    let kvm_stats = crate::observe::kvm_stats::KvmStats::open(&vcpu_fd).map(Arc::new);
    if kvm_stats.is_none() {
        log::debug!("this KVM offers no binary statistics (KVM_GET_STATS_FD)");
    }
    let exits = Arc::new(ExitCounts::default());
    let shared = stats.map(|reader| Shared {
        recorder: Arc::new(Mutex::new(Recorder::new(reader))),
        exits: exits.clone(),
        started: config.started,
        host: config.host.clone(),
        tsc_khz,
        kvm_stats: kvm_stats.clone(),
    });
    let api = match (&config.api_sock, &shared) {
        (Some(path), Some(shared)) => Some(ApiServer::bind(path, shared.clone()).map_err(Error::Api)?),
        (Some(_), None) => {
            log::warn!("--api-sock: this kernel exports no counters; nothing to serve");
            None
        }
        (None, _) => None,
    };
    Ok(Vm {
        vcpu_fd,
        _vm: vm,
        _mem: mem,
        serial,
        api,
        shared,
        observer: config.observer,
        exit_hook: config.exit_hook,
        kvm_stats,
        exits,
        tsc_khz,
        timeout: config.timeout,
        input: config.input,
        started: config.started,
        host: config.host,
    })
}

impl Vm {
    /// Runs the vCPU on its own thread until the guest ends, the timeout expires or a signal
    /// arrives.
    pub fn run(self) -> Result<RunReport, Error> {
        let Vm {
            mut vcpu_fd,
            _vm,
            _mem,
            serial,
            api,
            shared,
            observer,
            mut exit_hook,
            kvm_stats,
            exits,
            tsc_khz,
            timeout,
            input,
            started,
            host,
        } = self;

        // SIGINT and SIGTERM are read from a signalfd by the event loop; block them before the vCPU
        // thread exists so that it inherits the mask and never takes them.
        let signals = SignalFd::new(&[libc::SIGINT, libc::SIGTERM]).map_err(|e| Error::Host("signalfd", e))?;
        register_signal_handler(SIGRTMIN(), kick_handler)
            .map_err(|e| Error::Host("vCPU kick signal", io::Error::from_raw_os_error(e.errno())))?;

        let input_status = InputStatus::default();
        let stop = Arc::new(AtomicBool::new(false));
        let vcpu_done = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Host("eventfd", e))?;
        let vcpu_thread = {
            let stop = stop.clone();
            let done = vcpu_done.try_clone().map_err(|e| Error::Host("eventfd", e))?;
            let mut devices =
                Devices { serial: serial.clone(), exit_port: ExitPort, input_status: input_status.clone() };
            let counts = exits.clone();
            std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn(move || {
                    let hook = exit_hook.as_deref_mut().map(|h| h as &mut dyn ExitHook);
                    let end = vcpu::run(&mut vcpu_fd, &mut devices, &stop, &counts, hook);
                    let _ = done.write(1);
                    (end, vcpu_fd)
                })
                .map_err(|e| Error::Host("vCPU thread", e))?
        };

        let control = Arc::new(Mutex::new(Control::new(signals, vcpu_done, timeout)?));
        let mut events = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new()
            .map_err(|e| Error::Host("event loop", io::Error::other(format!("{e:?}"))))?;
        events.add_subscriber(control.clone());
        if let Some(fd) = input {
            events.add_subscriber(Arc::new(Mutex::new(SerialInput::new(serial.clone(), fd, input_status.clone()))));
        }
        if let Some(shared) = &shared {
            let poller = Poller::new(shared.clone(), observer).map_err(|e| Error::Host("stats poller", e))?;
            events.add_subscriber(Arc::new(Mutex::new(poller)));
        }
        let api = api.map(|api| {
            let api = Arc::new(Mutex::new(api));
            events.add_subscriber(api.clone());
            api
        });
        let host_stop = loop {
            if let Err(e) = events.run() {
                log::warn!("event loop: {e:?}");
            }
            if let Some(reason) = control.lock().expect("control lock poisoned").stop {
                break reason;
            }
        };

        stop.store(true, Ordering::Release);
        while !vcpu_thread.is_finished() {
            // A signal may land just before KVM_RUN starts; kicking again until the thread ends
            // closes that window.
            let _ = vcpu_thread.kill(SIGRTMIN());
            std::thread::sleep(Duration::from_millis(1));
        }
        let (end, vcpu_fd) = vcpu_thread.join().expect("the vCPU thread does not panic");
        let ended_after = started.elapsed();
        drop(events);
        drop(api);
        let recorder = shared.and_then(|shared| {
            let mut recorder = Arc::try_unwrap(shared.recorder).ok()?.into_inner().ok()?;
            match recorder.poll() {
                Ok(()) => Some(recorder),
                Err(e) => {
                    log::warn!("cannot read the kernel's counters: {e}");
                    None
                }
            }
        });
        let stats = recorder.as_ref().and_then(|r| r.last.as_deref());

        let outcome = match (host_stop, end) {
            (_, VcpuEnd::GuestExit(c)) => Outcome::GuestExit(c),
            (_, VcpuEnd::Crash(crash, registers)) => Outcome::Crashed { crash, registers },
            (_, VcpuEnd::Error(e)) => return Err(Error::VcpuRun(e)),
            (StopReason::Timeout(after), VcpuEnd::Stopped) => {
                Outcome::Timeout { after, held_by: who_held_the_cpu(&vcpu_fd, stats) }
            }
            (StopReason::Signal(s), VcpuEnd::Stopped) => Outcome::Interrupted(s),
            (StopReason::VcpuDone, VcpuEnd::Stopped) => unreachable!("the vCPU stops on its own only with an end"),
        };
        let console = serial.lock().expect("serial lock poisoned");
        let banner_after = console.writer().banner_at().map(|t| t.duration_since(started));
        Ok(RunReport {
            outcome,
            host,
            tsc_khz,
            banner_after,
            ended_after,
            exits: exits.totals(),
            kvm_stats: kvm_stats.map(|k| k.read()),
            serial_bytes: console.writer().bytes(),
            recorder,
        })
    }
}

/// Says which process had the CPU when the run was stopped, and whether a timer could have
/// taken it back.
fn who_held_the_cpu(vcpu: &kvm_ioctls::VcpuFd, stats: Option<&StatsPage>) -> String {
    let place = match vcpu.get_regs().and_then(|r| vcpu.get_sregs().map(|s| (r, s))) {
        Ok((regs, sregs)) => format!("in ring {} at rip {:#x}", sregs.cs.selector & 3, regs.rip),
        Err(_) => "at an unknown place".to_string(),
    };
    let Some(page) = stats else {
        return format!("the vCPU was {place} (the kernel's counters are unavailable)");
    };
    let holder = match page.procs.iter().find(|p| page.current_pid != 0 && p.pid == page.current_pid) {
        Some(p) => format!("pid {} ({})", p.pid, p.name()),
        None => "the kernel (no process was running)".to_string(),
    };
    let timer = if page.timer_hz == 0 {
        "no timer interrupt was armed (--timer-hz 0), so the kernel could not take the CPU back".to_string()
    } else {
        format!("the timer ran at {} Hz", page.timer_hz)
    };
    format!("the CPU was held by {holder} {place}; {timer}")
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug)]
enum StopReason {
    VcpuDone,
    Timeout(Duration),
    Signal(i32),
}

/// Watches the vCPU's end, the timeout and the stop signals.
struct Control {
    signals: SignalFd,
    vcpu_done: EventFd,
    timer: Option<(TimerFd, Duration)>,
    stop: Option<StopReason>,
}

impl Control {
    fn new(signals: SignalFd, vcpu_done: EventFd, timeout: Option<Duration>) -> Result<Self, Error> {
        let timer = match timeout {
            Some(t) => {
                let mut timer =
                    TimerFd::new().map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                timer.reset(t, None).map_err(|e| Error::Host("timerfd", io::Error::from_raw_os_error(e.errno())))?;
                Some((timer, t))
            }
            None => None,
        };
        Ok(Self { signals, vcpu_done, timer, stop: None })
    }
}

impl MutEventSubscriber for Control {
    fn init(&mut self, ops: &mut EventOps) {
        let mut fds = vec![self.signals.fd.as_raw_fd(), self.vcpu_done.as_raw_fd()];
        fds.extend(self.timer.as_ref().map(|(t, _)| t.as_raw_fd()));
        for fd in fds {
            ops.add(Events::new_raw(fd, EventSet::IN)).expect("a fresh fd can be added to the event loop");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.vcpu_done.as_raw_fd() {
            let _ = self.vcpu_done.read();
            self.stop.get_or_insert(StopReason::VcpuDone);
        } else if fd == self.signals.fd.as_raw_fd() {
            if let Some(signal) = self.signals.read() {
                self.stop.get_or_insert(StopReason::Signal(signal));
            }
        } else if let Some((timer, t)) = &mut self.timer {
            if fd == timer.as_raw_fd() {
                let _ = timer.wait();
                self.stop.get_or_insert(StopReason::Timeout(*t));
            }
        }
    }
}

/// A signalfd for signals that are blocked in this thread (and so in threads it creates) for
/// as long as it lives.
struct SignalFd {
    fd: OwnedFd,
    set: libc::sigset_t,
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        // SAFETY: `set` is the initialised set this thread blocked in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut()) };
    }
}

impl SignalFd {
    fn new(signals: &[libc::c_int]) -> io::Result<Self> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t for these libc calls; the signals are valid numbers.
        unsafe {
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: creates a new fd from a valid sigset; the result is checked below.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by signalfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, set })
    }

    /// The number of the next pending signal, if any.
    fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`, which is `size` bytes long.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_bounds() {
        assert!(matches!(check_mem(0), Err(Error::MemSize(0))));
        assert!(matches!(check_mem(layout::MEM_MAX_MIB + 1), Err(Error::MemSize(_))));
        assert_eq!(check_mem(128).unwrap(), 128 << 20);
        assert_eq!(Error::MemSize(0).exit_code(), code::USAGE);
    }

    #[test]
    fn kvm_errors_name_the_fix() {
        let missing = open_kvm(Path::new("/nonexistent/kvm")).err().unwrap();
        assert!(matches!(missing, Error::KvmMissing(_)));
        assert_eq!(missing.exit_code(), code::KVM_UNAVAILABLE);
        assert!(missing.to_string().contains("KVM is not available"));
        let not_kvm = open_kvm(Path::new("/dev/null")).err().unwrap();
        assert_eq!(not_kvm.exit_code(), code::KVM_UNAVAILABLE);
    }

    #[test]
    fn outcomes_map_to_documented_codes() {
        assert_eq!(Outcome::GuestExit(3).exit_code(), 3);
        let timeout = Outcome::Timeout { after: Duration::from_secs(1), held_by: String::new() };
        assert_eq!(timeout.exit_code(), 124);
        assert_eq!(Outcome::Interrupted(libc::SIGINT).exit_code(), 130);
        let crash = Outcome::Crashed { crash: Crash::TripleFault, registers: String::new() };
        assert_eq!(crash.exit_code(), 70);
    }
}
