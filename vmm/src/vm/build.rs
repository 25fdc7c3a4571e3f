//! Building a VM for one run: check the configuration, open KVM, create the VM, its memory,
//! irqchip and vCPU, load the kernel, and wire the serial port and the observers. The result is
//! a [`Vm`] ready to run (see `run.rs`).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use lde_abi::cmdline::{
    CPUS_KEY, DIRTY_RAM_BYTE, LAPIC_KHZ_KEY, TEST_DIRTY_RAM, TEST_HOST_NMI, TEST_KEY, TSC_KHZ_KEY, ZEROED_RAM_KEY,
};
use lde_abi::ports::SERIAL_IRQ;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::disks::{self, Disk};
use super::signals::{self, SignalFd};
use super::{Error, RunConfig};
use crate::boot;
use crate::devices::{new_serial, SerialDevice};
use crate::host::HostInfo;
use crate::layout;
use crate::observe::kvm_stats::KvmStats;
use crate::observe::monitor::{ApiServer, Observer, Shared};
use crate::observe::recorder::Recorder;
use crate::observe::stats_page::StatsReader;
use crate::seccomp::{self, Thread};
use crate::vcpu::{self, VmExitHook};
use crate::vmexit::VmExitCounts;

use crate::layout::KVM_TSS_ADDR;

/// Fills every byte of guest RAM with [`DIRTY_RAM_BYTE`] (the dirty-ram test hook).
fn dirty_ram(mem: &GuestMemoryMmap) -> Result<(), Error> {
    let chunk = [DIRTY_RAM_BYTE; 64 * 1024];
    for region in mem.iter() {
        let mut at = 0;
        while at < region.len() {
            let n = (region.len() - at).min(chunk.len() as u64);
            let addr = GuestAddress(region.start_addr().0 + at);
            mem.write_slice(&chunk[..n as usize], addr)
                .map_err(|e| Error::Host("fill guest RAM (dirty-ram hook)", io::Error::other(e)))?;
            at += n;
        }
    }
    Ok(())
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

/// The rate of KVM's in-kernel LAPIC timer, in kHz.
const KVM_LAPIC_KHZ: u32 = 1_000_000;

/// A VM built and loaded, its vCPU ready at the PVH entry.
pub struct Vm {
    // Field order is drop order: the vCPU and VM go before the memory they map.
    pub(super) vcpu_fd: kvm_ioctls::VcpuFd,
    pub(super) _vm: Arc<VmFd>,
    /// Send the guest NMIs while it runs (the `lde.test=host-nmi` hook).
    pub(super) send_nmis: bool,
    pub(super) _mem: GuestMemoryMmap,
    pub(super) serial: Arc<Mutex<SerialDevice>>,
    pub(super) api: Option<ApiServer>,
    pub(super) shared: Option<Shared>,
    pub(super) observer: Option<Observer>,
    pub(super) exit_hook: Option<Box<dyn VmExitHook>>,
    pub(super) kvm_stats: Option<Arc<KvmStats>>,
    pub(super) exits: Arc<VmExitCounts>,
    pub(super) tsc_khz: Option<u32>,
    pub(super) timeout: Option<Duration>,
    pub(super) input: Option<RawFd>,
    pub(super) started: Instant,
    pub(super) host: HostInfo,
    pub(super) signals: SignalFd,
    /// The filters of the vCPU and the event-loop threads, unless seccomp is off.
    pub(super) filters: Option<(Vec<seccompiler::BpfProgram>, Vec<seccompiler::BpfProgram>)>,
    pub(super) seccomp_check: Option<Thread>,
    pub(super) disks: Vec<Disk>,
    /// The other vCPUs (`--cpus`), in KVM's uninitialized state until the guest starts them.
    pub(super) aps: Vec<kvm_ioctls::VcpuFd>,
}

/// Checks the configuration, opens KVM, builds the VM and loads the kernel.
///
/// Every mistake a user can make (memory size, kernel file, KVM access) is reported here,
/// before the guest runs.
pub fn prepare(config: RunConfig) -> Result<Vm, Error> {
    // From here on the signals that would end lde are read by the run (see signals.rs): one
    // that arrives while the VM is built stops the run as soon as it starts.
    let signals = SignalFd::new(&signals::terminating()).map_err(|e| Error::Host("signalfd", e))?;
    let mem_size = check_mem(config.mem_mib)?;
    // Disk images are opened (and locked) before KVM: a file that cannot be a disk is said at once.
    let images = crate::devices::virtio::image::open_all(&config.disks)?;
    let filters = match config.seccomp {
        true => Some((seccomp::filter(Thread::Vcpu)?, seccomp::filter(Thread::EventLoop)?)),
        false => None,
    };
    let (kernel_name, kernel_image) = read_kernel(config.kernel.as_deref())?;
    boot::check_kernel(&kernel_image, mem_size).map_err(|e| Error::boot(&kernel_name, e))?;
    boot::check_cmdline(&config.cmdline).map_err(|e| Error::boot(&kernel_name, e))?;

    let kvm = open_kvm(&config.kvm_device)?;
    let (vm, mem, vcpu_fd) = create_vm(&kvm, mem_size)?;
    let tsc_khz = vcpu_fd.get_tsc_khz().ok();
    // The dirty-ram test hook hands the kernel RAM as a loader that leaves it dirty would.
    let dirty = lde_kcore::cmdline::value(&config.cmdline, TEST_KEY) == Some(TEST_DIRTY_RAM);
    if dirty {
        dirty_ram(&mem)?;
    }
    let mut cmdline = kernel_cmdline(&config.cmdline, tsc_khz, dirty, config.cpus);
    if !images.is_empty() {
        cmdline = format!("{cmdline} {}", disks::cmdline_words(images.len())?);
    }
    let boot_entry = boot::load(&mem, mem_size, &kernel_image, &cmdline, config.initrd.as_deref())
        .map_err(|e| Error::boot(&kernel_name, e))?;
    vcpu::setup_pvh(&kvm, &vcpu_fd, boot_entry).map_err(|e| Error::Setup("vCPU registers", e))?;
    let aps = create_aps(&kvm, &vm, config.cpus)?;
    crate::mptable::write(&mem, config.cpus)
        .map_err(|_| Error::Host("MP table", io::Error::other("outside guest memory")))?;

    let serial = new_serial(config.console).map_err(|e| Error::Host("serial eventfds", e))?;
    vm.register_irqfd(&serial.interrupt_evt().0, SERIAL_IRQ).map_err(|e| Error::Setup("serial irqfd", e))?;
    let serial = Arc::new(Mutex::new(serial));
    let disks = disks::attach(&vm, &mem, images)?;
    let kvm_stats = KvmStats::open(&vcpu_fd).map(Arc::new);
    let exits = Arc::new(VmExitCounts::default());
    let sources = Sources {
        tsc_khz,
        kvm_stats: kvm_stats.clone(),
        exits: exits.clone(),
        serial: serial.clone(),
        started: config.started,
        host: config.host.clone(),
    };
    let (shared, api) = observe(&mem, &kernel_image, config.api_sock.as_deref(), sources)?;
    Ok(Vm {
        vcpu_fd,
        _vm: Arc::new(vm),
        send_nmis: lde_kcore::cmdline::value(&cmdline, TEST_KEY) == Some(TEST_HOST_NMI),
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
        signals,
        filters,
        seccomp_check: config.seccomp_check,
        disks,
        aps,
    })
}

/// The kernel to boot and the name its errors give it: the file at `path`, or the embedded one.
fn read_kernel(path: Option<&Path>) -> Result<(String, Vec<u8>), Error> {
    Ok(match path {
        Some(path) => (
            path.display().to_string(),
            crate::files::read_limited(path, crate::files::KERNEL_MAX_SIZE)
                .map_err(|e| Error::KernelRead(path.to_path_buf(), e))?,
        ),
        None => ("(embedded)".to_string(), crate::guest::KERNEL.to_vec()),
    })
}

/// Creates the VM, its memory, its in-kernel irqchip and its vCPU, in the order KVM needs (also
/// the bench's floor, `bench/floor.rs`). Drop the vCPU and the VM before the memory.
pub(crate) fn create_vm(kvm: &Kvm, mem_size: u64) -> Result<(VmFd, GuestMemoryMmap, VcpuFd), Error> {
    let vm = kvm.create_vm().map_err(|e| Error::Setup("create the VM", e))?;
    vm.set_tss_address(KVM_TSS_ADDR as usize).map_err(|e| Error::Setup("TSS address", e))?;
    // Memory before the irqchip: the other way round, KVM_SET_USER_MEMORY_REGION waits 4-9 ms
    // on PVM (docs/platform.md); this way both take ~0.1 ms.
    let mem = create_memory(&vm, mem_size)?;
    vm.create_irq_chip().map_err(|e| Error::Setup("in-kernel irqchip", e))?;
    let vcpu_fd = vm.create_vcpu(0).map_err(|e| Error::Setup("create the vCPU", e))?;
    Ok((vm, mem, vcpu_fd))
}

/// vCPUs 1 to `cpus - 1`, with their CPUID and nothing else: KVM leaves each in its
/// uninitialized state until the guest's INIT and SIPI start it (lde sets no AP's registers).
fn create_aps(kvm: &Kvm, vm: &VmFd, cpus: u8) -> Result<Vec<kvm_ioctls::VcpuFd>, Error> {
    (1..cpus)
        .map(|id| {
            let ap = vm.create_vcpu(u64::from(id)).map_err(|e| Error::Setup("create a vCPU", e))?;
            vcpu::set_cpuid(kvm, &ap, id).map_err(|e| Error::Setup("vCPU CPUID", e))?;
            Ok(ap)
        })
        .collect()
}

/// The kernel's command line: `cmdline` and, where it does not set them already, what lde
/// knows for the kernel (the TSC rate, that RAM reads as zero, the LAPIC timer's rate).
fn kernel_cmdline(cmdline: &str, tsc_khz: Option<u32>, dirty_ram: bool, cpus: u8) -> String {
    // The kernel takes the TSC rate from KVM rather than measuring it (unless told otherwise).
    let mut cmdline = cmdline.to_string();
    if let Some(khz) = tsc_khz.filter(|_| !cmdline.contains(TSC_KHZ_KEY)) {
        cmdline = format!("{cmdline} {TSC_KHZ_KEY}={khz}").trim().to_string();
    }
    // Guest memory is a fresh anonymous mapping: all but what boot::load writes (boot data
    // below 1 MiB, the kernel, the initrd) reads as zero, so the kernel need not zero frames;
    // unless the dirty-ram test hook fills it, as a loader that leaves RAM dirty would.
    if !dirty_ram && !cmdline.contains(ZEROED_RAM_KEY) {
        cmdline = format!("{cmdline} {ZEROED_RAM_KEY}=1").trim().to_string();
    }
    // KVM's in-kernel LAPIC timer counts at 1 GHz (APIC_BUS_CYCLE_NS = 1, Documentation/virt/kvm
    // api.rst, KVM_CAP_X86_APIC_BUS_CYCLES_NS), so the kernel need not measure it.
    if !cmdline.contains(LAPIC_KHZ_KEY) {
        cmdline = format!("{cmdline} {LAPIC_KHZ_KEY}={KVM_LAPIC_KHZ}").trim().to_string();
    }
    // Only with more than one vCPU, so that a one-CPU run boots exactly as without `--cpus`.
    if cpus > 1 && !cmdline.contains(CPUS_KEY) {
        cmdline = format!("{cmdline} {CPUS_KEY}={cpus}").trim().to_string();
    }
    cmdline
}

/// What the observers read besides the kernel's own counters.
struct Sources {
    tsc_khz: Option<u32>,
    kvm_stats: Option<Arc<KvmStats>>,
    exits: Arc<VmExitCounts>,
    serial: Arc<Mutex<SerialDevice>>,
    started: Instant,
    host: HostInfo,
}

/// The state the observers share, where the kernel exports its counters, and the API server
/// on `api_sock` if asked for.
fn observe(
    mem: &GuestMemoryMmap,
    kernel_image: &[u8],
    api_sock: Option<&Path>,
    sources: Sources,
) -> Result<(Option<Shared>, Option<ApiServer>), Error> {
    let stats = match StatsReader::new(mem.clone(), kernel_image) {
        Ok(reader) => Some(reader),
        Err(e) => {
            log::warn!("no kernel counters for this run: {e}");
            None
        }
    };
    if sources.kvm_stats.is_none() {
        log::debug!("this KVM offers no binary statistics (KVM_GET_STATS_FD)");
    }
    let shared = stats.map(|reader| Shared {
        recorder: Arc::new(Mutex::new(Recorder::new(reader))),
        exits: sources.exits,
        started: sources.started,
        host: sources.host,
        tsc_khz: sources.tsc_khz,
        kvm_stats: sources.kvm_stats,
        serial: sources.serial,
    });
    let api = match (api_sock, &shared) {
        (Some(path), Some(shared)) => Some(ApiServer::bind(path, shared.clone()).map_err(Error::Api)?),
        (Some(_), None) => {
            log::warn!("--api-sock: this kernel exports no counters; nothing to serve");
            None
        }
        (None, _) => None,
    };
    Ok((shared, api))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_bounds() {
        assert!(matches!(check_mem(0), Err(Error::MemSize(0))));
        assert!(matches!(check_mem(layout::MEM_MAX_MIB + 1), Err(Error::MemSize(_))));
        assert_eq!(check_mem(128).unwrap(), 128 << 20);
        assert_eq!(Error::MemSize(0).exit_code(), lde_abi::exit_code::USAGE);
    }

    #[test]
    fn kvm_errors_name_the_fix() {
        let missing = open_kvm(Path::new("/nonexistent/kvm")).err().unwrap();
        assert!(matches!(missing, Error::KvmMissing(_)));
        assert_eq!(missing.exit_code(), lde_abi::exit_code::KVM_UNAVAILABLE);
        assert!(missing.to_string().contains("KVM is not available"));
        let not_kvm = open_kvm(Path::new("/dev/null")).err().unwrap();
        assert_eq!(not_kvm.exit_code(), lde_abi::exit_code::KVM_UNAVAILABLE);
    }

    #[test]
    fn cpus_key_only_with_several_cpus() {
        let one = kernel_cmdline("lde.run=hello", Some(2_000_000), false, 1);
        assert_eq!(one, "lde.run=hello lde.tsc_khz=2000000 lde.zeroed_ram=1 lde.lapic_khz=1000000");
        let four = kernel_cmdline("lde.run=hello", Some(2_000_000), false, 4);
        assert_eq!(four, format!("{one} lde.cpus=4"));
        assert_eq!(kernel_cmdline("lde.cpus=2", None, false, 4).matches("lde.cpus").count(), 1);
    }
}
