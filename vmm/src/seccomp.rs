//! Seccomp filters for the threads that run a guest (rust-vmm's `seccompiler`, as Firecracker
//! does): once the VM is built, the vCPU thread and the event-loop thread may make only the
//! system calls they need. The main thread, which builds VMs, writes reports and waits for the
//! two, stays unfiltered.
//!
//! The allow-lists come from tracing real runs (`run` with every observer, `bench`, `probe`,
//! crashes, timeouts, signals, piped and terminal input) and are as short as those need.
//! `ioctl` is allowed only with the requests each thread makes. A forbidden call raises SIGSYS;
//! its handler restores the terminal, says which call it was in one line and exits
//! [`lde_abi::exit_code::VMM_FAILED`]. `lde run --no-seccomp` runs without the filters, for
//! debugging.
//!
//! Under `lde run --gdb` the vCPU thread serves GDB too and gets [`Thread::GdbVcpu`]'s list:
//! the vCPU's, plus the socket reads and writes of the GDB connection and the KVM requests of
//! guest debugging (set registers, FPU, debug control, the TSC offset). It accepts GDB's
//! connection before the filter is installed. The other vCPUs' threads (`--cpus`) get the same
//! list under GDB: they and the stub kick each other out of `KVM_RUN` to stop the machine.

use std::collections::BTreeMap;

use lde_abi::exit_code as code;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// The threads of a run that get a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// Runs `KVM_RUN` and the devices it exits to.
    Vcpu,
    /// Waits on signals, the timeout, stdin, the stats-page poller and the API socket.
    EventLoop,
    /// The vCPU thread of `lde run --gdb`, which also talks to GDB.
    GdbVcpu,
}

/// Why a filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the seccomp filter")]
pub struct Error(#[source] seccompiler::Error);

/// `ioctl` requests (the second argument).
mod request {
    use kvm_bindings::{kvm_device_attr, kvm_fpu, kvm_guest_debug, kvm_regs};

    /// `_IOW(KVMIO, nr, size)`, `_IOR`, as the kernel's ioctl.h encodes them.
    const fn iow(nr: u64, size: usize) -> u64 {
        (1 << 30) | ((size as u64) << 16) | (0xae << 8) | nr
    }
    const fn ior(nr: u64, size: usize) -> u64 {
        (2 << 30) | ((size as u64) << 16) | (0xae << 8) | nr
    }
    /// KVM_SET_REGS: GDB writes registers.
    pub const KVM_SET_REGS: u64 = iow(0x82, size_of::<kvm_regs>());
    /// KVM_SET_SREGS: a stepped `iretq` to ring 3 carried out by lde (PVM).
    pub const KVM_SET_SREGS: u64 = iow(0x84, size_of::<kvm_bindings::kvm_sregs>());
    /// KVM_GET_FPU, KVM_SET_FPU: GDB reads and writes the x87/SSE registers.
    pub const KVM_GET_FPU: u64 = ior(0x8c, size_of::<kvm_fpu>());
    pub const KVM_SET_FPU: u64 = iow(0x8d, size_of::<kvm_fpu>());
    /// KVM_SET_GUEST_DEBUG: single step and the debug registers.
    pub const KVM_SET_GUEST_DEBUG: u64 = iow(0x9b, size_of::<kvm_guest_debug>());
    /// KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS: a guest's own `int3` handed back to it as #BP
    /// while lde's software breakpoints make KVM intercept them.
    pub const KVM_GET_VCPU_EVENTS: u64 = ior(0x9f, size_of::<kvm_bindings::kvm_vcpu_events>());
    pub const KVM_SET_VCPU_EVENTS: u64 = iow(0xa0, size_of::<kvm_bindings::kvm_vcpu_events>());
    /// KVM_SET_DEVICE_ATTR, KVM_GET_DEVICE_ATTR: the vCPU's TSC offset (time stopped in GDB).
    pub const KVM_SET_DEVICE_ATTR: u64 = iow(0xe1, size_of::<kvm_device_attr>());
    pub const KVM_GET_DEVICE_ATTR: u64 = iow(0xe2, size_of::<kvm_device_attr>());
    /// KVM_GET_MSRS: STAR, for a `sysretq` to ring 3 that lde carries out (PVM).
    pub const KVM_GET_MSRS: u64 = (3 << 30) | ((size_of::<kvm_bindings::kvm_msrs>() as u64) << 16) | (0xae << 8) | 0x88;
    /// KVM_GET_MP_STATE: what a vCPU is doing, for GDB's `info threads`.
    pub const KVM_GET_MP_STATE: u64 = ior(0x98, size_of::<kvm_bindings::kvm_mp_state>());
    /// KVM_RUN: `_IO(KVMIO, 0x80)`.
    pub const KVM_RUN: u64 = 0xae80;
    /// KVM_GET_REGS: `_IOR(KVMIO, 0x81, struct kvm_regs)` (144 bytes): the crash dump.
    pub const KVM_GET_REGS: u64 = 0x8090_ae81;
    /// KVM_GET_SREGS: `_IOR(KVMIO, 0x83, struct kvm_sregs)` (312 bytes): the crash dump.
    pub const KVM_GET_SREGS: u64 = 0x8138_ae83;
    /// TCSETS: restoring the terminal (the SIGSYS handler).
    pub const TCSETS: u64 = libc::TCSETS;
    /// FIONBIO: an API client's socket made non-blocking.
    pub const FIONBIO: u64 = libc::FIONBIO;
    /// TIOCGWINSZ: `--watch` fits its table to the terminal's size.
    pub const TIOCGWINSZ: u64 = libc::TIOCGWINSZ;
    /// TCGETS: reading the terminal's mode (tcgetattr, before a tcsetattr).
    pub const TCGETS: u64 = libc::TCGETS;
}

/// System calls both threads make: memory, locks, time, thread exit, and the SIGSYS handler's
/// own `write` and `exit_group`.
const COMMON: &[libc::c_long] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// What `thread` may call beyond [`COMMON`], and the `ioctl` requests it may make.
fn specific(thread: Thread) -> (&'static [libc::c_long], &'static [u64]) {
    match thread {
        Thread::Vcpu => (
            // rt_sigreturn: the return from the kick handler that interrupts KVM_RUN; pread64:
            // KVM's binary statistics, read by a VM-exit hook at a boot milestone.
            &[libc::SYS_rt_sigreturn, libc::SYS_pread64],
            &[request::KVM_RUN, request::KVM_GET_REGS, request::KVM_GET_SREGS, request::TCSETS, request::TCGETS],
        ),
        Thread::GdbVcpu => (
            // The vCPU's, the GDB connection (recvfrom, sendto), the kick timer's end, and the
            // kicks between the vCPU threads that stop the machine as a whole (pthread_kill:
            // getpid, tgkill).
            &[
                libc::SYS_rt_sigreturn,
                libc::SYS_recvfrom,
                libc::SYS_sendto,
                libc::SYS_timer_delete,
                libc::SYS_getpid,
                libc::SYS_tgkill,
            ],
            &[
                request::KVM_RUN,
                request::KVM_GET_REGS,
                request::KVM_GET_SREGS,
                request::TCSETS,
                request::TCGETS,
                request::KVM_SET_REGS,
                request::KVM_SET_SREGS,
                request::KVM_GET_FPU,
                request::KVM_SET_FPU,
                request::KVM_SET_GUEST_DEBUG,
                request::KVM_GET_VCPU_EVENTS,
                request::KVM_SET_VCPU_EVENTS,
                request::KVM_SET_DEVICE_ATTR,
                request::KVM_GET_DEVICE_ATTR,
                request::KVM_GET_MP_STATE,
                request::KVM_GET_MSRS,
            ],
        ),
        Thread::EventLoop => (
            // pread64: KVM's binary statistics and disk reads; pwrite64, fdatasync: disk writes
            // and flushes; the rest: epoll and the API socket (recvfrom: a client's HTTP
            // request; timerfd_settime: its clients' deadlines).
            &[
                libc::SYS_timerfd_settime,
                libc::SYS_epoll_wait,
                libc::SYS_epoll_ctl,
                libc::SYS_accept4,
                libc::SYS_setsockopt,
                libc::SYS_sendto,
                libc::SYS_recvfrom,
                libc::SYS_pread64,
                libc::SYS_pwrite64,
                libc::SYS_fdatasync,
            ],
            &[request::FIONBIO, request::TCSETS, request::TCGETS, request::TIOCGWINSZ],
        ),
    }
}

/// A rule on argument `index` of a system call.
fn rule(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)?])
}

/// The BPF programs for `thread`, to be installed together, in order: one that makes `openat`
/// fail with EACCES, and the allow-list (anything else raises SIGSYS). glibc's malloc opens
/// /proc/sys/vm/overcommit_memory once when a thread's heap first shrinks, and does without
/// the answer; nothing else in these threads opens a file.
pub fn filter(thread: Thread) -> Result<Vec<BpfProgram>, Error> {
    let backend = |e| Error(seccompiler::Error::Backend(e));
    let (calls, requests) = specific(thread);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON.iter().chain(calls).map(|&nr| (nr, vec![])).collect();
    let ioctl = requests.iter().map(|&r| rule(1, SeccompCmpOp::Eq, r)).collect::<Result<Vec<_>, _>>();
    rules.insert(libc::SYS_ioctl, ioctl.map_err(backend)?);
    // Memory, but never executable memory.
    let no_exec = || rule(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0).map(|r| vec![r]);
    rules.insert(libc::SYS_mmap, no_exec().map_err(backend)?);
    rules.insert(libc::SYS_mprotect, no_exec().map_err(backend)?);
    // Debug builds check that an fd is open before closing it.
    rules.insert(libc::SYS_fcntl, vec![rule(1, SeccompCmpOp::Eq, libc::F_GETFD as u64).map_err(backend)?]);
    rules.insert(libc::SYS_openat, vec![]);
    let allow_list = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64);
    let no_open = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_openat, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        TargetArch::x86_64,
    );
    // seccompiler makes a prctl before each filter it installs: the allow-list goes last.
    [no_open, allow_list].into_iter().map(|f| f.and_then(BpfProgram::try_from).map_err(backend)).collect()
}

/// Installs `programs` on the calling thread (for the rest of its life), after the SIGSYS
/// handler that reports a forbidden call.
pub fn install(programs: &[BpfProgram]) -> Result<(), Error> {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // SAFETY: a zeroed sigaction is valid plain data; the handler below is
        // async-signal-safe (see `forbidden`), and SA_SIGINFO matches its signature.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forbidden as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut());
        }
    });
    programs.iter().try_for_each(|p| seccompiler::apply_filter(p).map_err(Error))
}

/// The SIGSYS handler: restores the terminal, writes one line naming the system call, and
/// exits. Only async-signal-safe work: no allocation, no locks; `write`, `tcsetattr` (ioctl
/// TCSETS) and `_exit` are on every filter's list.
extern "C" fn forbidden(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // For SIGSYS the kernel fills `_sigsys { void *call_addr; int syscall; unsigned arch; }`
    // after the 16-byte header of siginfo_t: the call's number is at offset 24.
    // SAFETY: `info` points at the siginfo_t of this SIGSYS (SA_SIGINFO).
    let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read_unaligned() };
    crate::terminal::restore_in_signal_handler();
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"lde: error: system call ");
    let mut digits = [0u8; 12];
    let mut at = digits.len();
    let mut value = nr.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    put(&digits[at..]);
    put(b" is not on lde's seccomp allow-list; stopped (--no-seccomp runs without it)\n");
    // SAFETY: write and _exit are async-signal-safe; `line` holds `len` initialised bytes.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len);
        libc::_exit(code::VMM_FAILED as i32);
    }
}

/// Makes a system call no filter allows (`socket`, as a thread taken over would to reach the
/// network) and says whether it went through: the hidden `--seccomp-check` test hook. Under a
/// filter it never returns.
pub fn attempt_forbidden_call() -> bool {
    // SAFETY: creates a socket and closes it at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: closing the fd just created.
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile() {
        for thread in [Thread::Vcpu, Thread::EventLoop, Thread::GdbVcpu] {
            let programs = filter(thread).unwrap();
            assert_eq!(programs.len(), 2);
            assert!(programs[1].len() > COMMON.len(), "{thread:?}: {} instructions", programs[0].len());
        }
    }

    #[test]
    fn the_ioctl_numbers_are_kvms() {
        assert_eq!(request::KVM_GET_REGS >> 16 & 0x3fff, std::mem::size_of::<kvm_bindings::kvm_regs>() as u64);
        assert_eq!(request::KVM_GET_SREGS >> 16 & 0x3fff, std::mem::size_of::<kvm_bindings::kvm_sregs>() as u64);
        // The encodings the kernel's headers give (size 72, 144, 416, 24).
        assert_eq!(request::KVM_SET_GUEST_DEBUG, 0x4048_ae9b);
        assert_eq!(request::KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(request::KVM_GET_FPU, 0x81a0_ae8c);
        assert_eq!(request::KVM_SET_DEVICE_ATTR, 0x4018_aee1);
        assert_eq!(request::KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
        assert_eq!(request::KVM_SET_VCPU_EVENTS, 0x4040_aea0);
    }
}
