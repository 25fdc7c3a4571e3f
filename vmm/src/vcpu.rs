//! The one vCPU: its PVH start state, its run loop, and the register dump printed when the
//! guest crashes.
//!
//! The run loop is a small state machine: `Running` until an exit's [`Action`] or a stop request
//! ends it. A stop request (Ctrl-C, timeout) sets a flag and kicks the thread out of `KVM_RUN`
//! with [`KICK_SIGNAL`]. An [`VmExitHook`] installed by the caller sees every exit and how long
//! its `KVM_RUN` took, without the loop knowing what it measures.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};

use crate::boot::BootEntry;
use crate::devices::Devices;
use crate::vmexit::{handle_vmexit, Action, Crash, VmExitCounts};

/// CR0.PE: protected mode.
const CR0_PE: u64 = 1;
/// EFLAGS bit 1 is always set.
const RFLAGS_RESERVED: u64 = 0x2;

/// How a vCPU run ended.
#[derive(Debug)]
pub enum VcpuEnd {
    /// The guest wrote this code to the shutdown port.
    Shutdown(u32),
    /// The guest crashed; the register dump follows the reason.
    Crash(Crash, String),
    /// The VMM asked the vCPU to stop (signal or timeout).
    Stopped,
    /// A KVM ioctl failed.
    Error(kvm_ioctls::Error),
    /// The thread's seccomp filter could not be installed; the guest never ran.
    Confined(crate::seccomp::Error),
    /// GDB's `kill` command stopped the guest (`lde run --gdb`).
    GdbKilled,
    /// Serving GDB failed before the guest ran (the connection could not be accepted).
    GdbFailed(String),
}

/// Sets CPUID (KVM's, completed by [`crate::cpuid::complete`]) and the PVH entry state: 32-bit
/// protected mode, paging off, flat 4 GiB segments, `rip` = the PVH entry, `rbx` = the start
/// info (PVH spec, "x86/HVM direct boot ABI").
pub fn setup_pvh(kvm: &Kvm, vcpu: &VcpuFd, boot: BootEntry) -> Result<(), kvm_ioctls::Error> {
    set_cpuid(kvm, vcpu, 0)?;

    let mut sregs = vcpu.get_sregs()?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x08,
        type_: 0xb, // execute/read, accessed
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment { selector: 0x10, type_: 0x3, ..code }; // read/write, accessed
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment { base: 0, limit: 0x67, selector: 0x18, type_: 0xb, s: 0, db: 0, g: 0, ..code };
    sregs.cr0 = CR0_PE;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)?;

    let regs = kvm_regs { rip: boot.entry.0, rbx: boot.start_info.0, rflags: RFLAGS_RESERVED, ..Default::default() };
    vcpu.set_regs(&regs)
}

/// Sets vCPU `id`'s CPUID: KVM's, completed by [`crate::cpuid::complete`], with its APIC id.
pub fn set_cpuid(kvm: &Kvm, vcpu: &VcpuFd, id: u8) -> Result<(), kvm_ioctls::Error> {
    let mut cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    // The table is KVM_MAX_CPUID_ENTRIES long; a full one has no room for the two leaves.
    crate::cpuid::complete(&mut cpuid, tsc_deadline).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
    if id != 0 {
        crate::cpuid::set_apic_id(&mut cpuid, id);
    }
    vcpu.set_cpuid2(&cpuid)
}

/// Sees every VM exit before it is handled, with the host TSC cycles of the `KVM_RUN` call that
/// ended in it (guest entry, guest work, exit back to lde). `lde bench` times port writes with
/// one and notes boot milestones with another; a run without a hook pays nothing for it.
pub trait VmExitHook: Send {
    fn after_exit(&mut self, exit: &VcpuExit<'_>, cycles: u64);

    /// Called once before the vCPU first runs, where KVM offers the vCPU's statistics: a hook
    /// may read them at an exit, while the vCPU is stopped.
    fn attach_kvm_stats(&mut self, _stats: std::sync::Arc<crate::observe::kvm_stats::KvmStats>) {}

    /// Called once before the vCPUs first run with the other vCPUs' statistics, in order (those
    /// KVM offers), which a hook may read at an exit of the first vCPU's.
    fn attach_other_kvm_stats(&mut self, _stats: Vec<std::sync::Arc<crate::observe::kvm_stats::KvmStats>>) {}
}

/// Runs the vCPU until the guest exits, crashes, or `stop` is set.
pub fn run(
    vcpu: &mut VcpuFd,
    devices: &mut Devices,
    stop: &AtomicBool,
    counts: &VmExitCounts,
    mut hook: Option<&mut dyn VmExitHook>,
) -> VcpuEnd {
    loop {
        if stop.load(Ordering::Acquire) {
            return VcpuEnd::Stopped;
        }
        let t0 = hook.is_some().then(rdtsc);
        let action = match vcpu.run() {
            Ok(exit) => {
                if let (Some(hook), Some(t0)) = (hook.as_deref_mut(), t0) {
                    hook.after_exit(&exit, rdtsc().saturating_sub(t0));
                }
                handle_vmexit(exit, devices, counts)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return VcpuEnd::Error(e),
        };
        if let Some(end) = end_of(vcpu, action) {
            return end;
        }
    }
}

/// How the run ends after an exit handled as `action`, if it does: a crash with its register
/// dump, read from `vcpu` while it is stopped.
pub fn end_of(vcpu: &mut VcpuFd, action: Action) -> Option<VcpuEnd> {
    match action {
        Action::Continue => None,
        Action::Shutdown(code) => Some(VcpuEnd::Shutdown(code)),
        Action::Crash(crash) => {
            let mut dump = dump_registers(vcpu);
            if crash == Crash::InternalError {
                dump.insert_str(0, &internal_error_detail(vcpu));
            }
            if crash == Crash::TripleFault && vcpu.get_sregs().is_ok_and(|s| is_reset_state(&s)) {
                dump.insert_str(0, RESET_AFTER_SHUTDOWN);
            }
            Some(VcpuEnd::Crash(crash, dump))
        }
    }
}

/// KVM's sub-error and data words of the last KVM_EXIT_INTERNAL_ERROR.
fn internal_error_detail(vcpu: &mut VcpuFd) -> String {
    let run = vcpu.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` is the union member KVM
    // filled in; ndata is clamped to the array's length before indexing.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let n = (internal.ndata as usize).min(internal.data.len());
    let data: Vec<String> = internal.data[..n].iter().map(|d| format!("{d:#x}")).collect();
    format!("  internal error suberror {} data [{}]\n", internal.suberror, data.join(", "))
}

/// Said before the dump when KVM reset the vCPU on the triple fault.
pub const RESET_AFTER_SHUTDOWN: &str =
    "  (these are the vCPU's reset state, not the state at the fault: KVM on AMD SVM INITs the \
     vCPU on a shutdown intercept, whose VMCB is undefined; the state that caused it is lost)\n";

/// Whether `s` is the state after INIT or reset (CS F000 based at FFFF_0000, real mode): what
/// KVM on SVM leaves after a triple fault (Linux `shutdown_interception`), where Intel's VMX and
/// PVM keep the state that caused it. lde's kernel never runs there.
pub fn is_reset_state(s: &kvm_sregs) -> bool {
    s.cs.selector == 0xf000 && s.cs.base == 0xffff_0000 && s.cr0 & 1 == 0
}

/// The general, control and segment registers, as lines of text.
pub fn dump_registers(vcpu: &VcpuFd) -> String {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(regs), Ok(sregs)) => format_registers(&regs, &sregs),
        (Err(e), _) | (_, Err(e)) => format!("  (registers unavailable: {e})\n"),
    }
}

/// Formats a register dump (pure, for tests).
pub fn format_registers(r: &kvm_regs, s: &kvm_sregs) -> String {
    let mut out = String::new();
    let mut line = |args: std::fmt::Arguments| {
        let _ = writeln!(out, "  {args}");
    };
    line(format_args!("rip {:016x} rsp {:016x} rflags {:016x}", r.rip, r.rsp, r.rflags));
    line(format_args!("rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", r.rax, r.rbx, r.rcx, r.rdx));
    line(format_args!("rsi {:016x} rdi {:016x} rbp {:016x} r8  {:016x}", r.rsi, r.rdi, r.rbp, r.r8));
    line(format_args!("r9  {:016x} r10 {:016x} r11 {:016x} r12 {:016x}", r.r9, r.r10, r.r11, r.r12));
    line(format_args!("r13 {:016x} r14 {:016x} r15 {:016x}", r.r13, r.r14, r.r15));
    line(format_args!("cr0 {:016x} cr2 {:016x} cr3 {:016x} cr4 {:016x} efer {:x}", s.cr0, s.cr2, s.cr3, s.cr4, s.efer));
    for (name, seg) in
        [("cs", &s.cs), ("ss", &s.ss), ("ds", &s.ds), ("es", &s.es), ("fs", &s.fs), ("gs", &s.gs), ("tr", &s.tr)]
    {
        line(format_args!(
            "{name}  selector {:04x} base {:016x} limit {:08x} type {:x} dpl {} l {} db {}",
            seg.selector, seg.base, seg.limit, seg.type_, seg.dpl, seg.l, seg.db
        ));
    }
    line(format_args!("gdt base {:016x} limit {:04x}", s.gdt.base, s.gdt.limit));
    line(format_args!("idt base {:016x} limit {:04x}", s.idt.base, s.idt.limit));
    out
}

/// The host's TSC (the guest's runs at the same rate on KVM).
fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names_every_register() {
        let regs = kvm_regs { rip: 0x10_3001, rsp: 0x11_df20, r15: 0xdead, ..Default::default() };
        let mut sregs = kvm_sregs::default();
        sregs.cs.selector = 0x10;
        sregs.cs.l = 1;
        sregs.cr3 = 0x10_6000;
        let text = format_registers(&regs, &sregs);
        assert!(text.contains("rip 0000000000103001 rsp 000000000011df20"));
        assert!(text.contains("r15 000000000000dead"));
        assert!(text.contains("cr3 0000000000106000"));
        assert!(text.contains("cs  selector 0010 base 0000000000000000 limit 00000000 type 0 dpl 0 l 1"));
        assert!(text.contains("idt base 0000000000000000 limit 0000"));
        assert_eq!(text.lines().count(), 15);
    }

    #[test]
    fn the_reset_state_is_told_from_a_kernels_state() {
        let mut reset = kvm_sregs::default();
        reset.cs.selector = 0xf000;
        reset.cs.base = 0xffff_0000;
        reset.cr0 = 0x10;
        assert!(is_reset_state(&reset));
        // lde's kernel: protected mode, its own code selector.
        let kernel = kvm_sregs { cr0: 0x8001_0011, cs: kvm_segment { selector: 0x10, ..Default::default() }, ..reset };
        assert!(!is_reset_state(&kernel));
        // A real-mode CS F000 that protected mode already left is not the reset state either.
        assert!(!is_reset_state(&kvm_sregs { cr0: 0x11, ..reset }));
    }
}
