//! Small CPU operations: port output to the exit device, halting, CPUID, control registers.

use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};

use x86_64::instructions::port::Port;
use x86_64::registers::control::{Cr2, Cr4, Cr4Flags};
use x86_64::registers::model_specific::Msr;

/// Ends the VM with `code` through the shutdown port; halts forever if no exit device answered.
pub fn shutdown(code: u32) -> ! {
    let mut port = Port::<u32>::new(lde_abi::ports::SHUTDOWN_PORT);
    // SAFETY: the shutdown port belongs to the VMM's (or QEMU's isa-debug-exit) exit device; a
    // write there has no effect on guest memory.
    unsafe { port.write(code) };
    halt_forever()
}

/// Whether [`milestone`] reports (`lde.milestones=1`).
pub static MILESTONES: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Reports a boot milestone to the VMM (one VM exit) where the command line asked for it.
pub fn milestone(which: u8) {
    if MILESTONES.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: the milestone port belongs to lde (nothing answers under QEMU); a write there
        // has no effect on guest memory.
        unsafe { Port::<u8>::new(lde_abi::ports::MILESTONE_PORT).write(which) };
    }
}

/// Reads the TSC (in ring 0 on PVM this costs ~6,500 cycles: use sparingly).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC cycles one simple ring-0 instruction takes here: the fastest of several short
/// `dec`/`jnz` loops (128 instructions each: ~40 ns on hardware, ~90 µs where ring 0 is
/// emulated), less the fastest back-to-back `rdtsc` pair (reading the TSC costs as much as
/// several instructions where it is emulated).
///
/// The fastest, because anything that interrupts a sample (the host preempting the vCPU above
/// all, on a loaded host) only makes it slower: a single sample can be several times the truth,
/// and the timer ceiling computed from it far too low. Several short samples rather than one
/// long one, so that at least one fits between two host preemptions.
pub fn measure_insn_cycles() -> u64 {
    const LOOPS: u64 = 64;
    const SAMPLES: u32 = 5;
    let (mut empty, mut looped) = (u64::MAX, u64::MAX);
    for _ in 0..SAMPLES {
        let t0 = rdtsc();
        let t1 = rdtsc();
        // SAFETY: a register-only countdown loop.
        unsafe {
            core::arch::asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) LOOPS => _, options(nomem, nostack));
        }
        let t2 = rdtsc();
        empty = empty.min(t1 - t0);
        looped = looped.min(t2 - t1);
    }
    looped.saturating_sub(empty) / (2 * LOOPS)
}

/// Enables interrupts and halts until one has been handled, then disables them again.
///
/// `sti; hlt` is atomic with respect to interrupts (the interrupt shadow of `sti` covers the
/// `hlt`), so a wake-up cannot slip in between the caller's check that found nothing to do and
/// the halt.
pub fn wait_for_interrupt() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}

/// Executes `ud2` in ring 0 (a test hook's deliberate kernel fault: `int3` would kill a PVM
/// guest outright).
pub fn raise_invalid_opcode() {
    // SAFETY: raises #UD; the kernel's trap handler reports it and shuts down.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
}

/// Disables interrupts and halts for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Executes CPUID (an exit to the hypervisor on KVM; see PLATFORM.md for PVM's answers).
pub fn cpuid(leaf: u32) -> CpuidResult {
    __cpuid(leaf)
}

/// The CPU vendor string (CPUID leaf 0), e.g. `AuthenticAMD`.
pub fn vendor() -> [u8; 12] {
    let r = cpuid(0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

/// The hypervisor signature (CPUID leaf 0x4000_0000), if CPUID.1:ECX[31] says there is one.
pub fn hypervisor_signature() -> Option<[u8; 12]> {
    if cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let r = cpuid(0x4000_0000);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    v[8..12].copy_from_slice(&r.edx.to_le_bytes());
    Some(v)
}

const FS_BASE_MSR: u32 = 0xc000_0100;
/// While the kernel runs, a process's GS base waits here (percpu.rs: GS base is the kernel's).
const KERNEL_GS_BASE_MSR: u32 = 0xc000_0102;

/// The FS and GS segment bases. A process can change them where the CPU lets ring 3 run
/// `wrfsbase`/`wrgsbase` (PVM hosts do, whatever CR4.FSGSBASE says), so the scheduler saves
/// and restores them with the process. The kernel uses GS for its per-CPU data (percpu.rs): a
/// process's GS base is kept in IA32_KERNEL_GS_BASE while the kernel runs, and `swapgs` on the
/// way back to ring 3 puts it in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentBases {
    pub fs: u64,
    pub gs: u64,
}

impl SegmentBases {
    /// The bases the CPU holds now.
    pub fn read() -> SegmentBases {
        // SAFETY: the FS/GS base MSRs exist on every x86-64 CPU; reading has no side effects.
        unsafe { SegmentBases { fs: Msr::new(FS_BASE_MSR).read(), gs: Msr::new(KERNEL_GS_BASE_MSR).read() } }
    }

    /// Loads these bases, writing only the MSRs whose value differs from `current`'s (a
    /// `wrmsr` costs ~13,000 cycles where ring 0 is emulated).
    pub fn load(&self, current: SegmentBases) {
        // SAFETY: the values were read from these MSRs (or are 0), so they are canonical; the
        // kernel does not use FS, and the GS base written is the one ring 3 gets at `swapgs`
        // (the kernel's own stays in GS base), so changing them affects only ring 3.
        unsafe {
            if self.fs != current.fs {
                Msr::new(FS_BASE_MSR).write(self.fs);
            }
            if self.gs != current.gs {
                Msr::new(KERNEL_GS_BASE_MSR).write(self.gs);
            }
        }
    }
}

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    Cr2::read_raw()
}

/// The CR4 protections the kernel turned on (those the CPU offers, CPUID leaf 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// SMEP: ring 0 cannot execute a user page (a kernel jump into user memory faults).
    pub smep: bool,
    /// UMIP: ring 3 cannot run `sgdt`, `sidt`, `sldt`, `smsw`, `str` (no kernel addresses leak).
    pub umip: bool,
    /// SMAP is offered. lde never turns it on: it needs `stac`/`clac` around every access to
    /// user memory, which kill the VM in ring 0 on PVM hosts.
    pub smap_offered: bool,
}

impl Protection {
    /// As `StatsPage::protection` holds it.
    pub fn bits(&self) -> u32 {
        use lde_abi::stats::{PROT_SMAP_OFFERED, PROT_SMEP, PROT_UMIP};
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        bit(self.smep, PROT_SMEP) | bit(self.umip, PROT_UMIP) | bit(self.smap_offered, PROT_SMAP_OFFERED)
    }
}

const CPUID7_EBX_SMEP: u32 = 1 << 7;
const CPUID7_EBX_SMAP: u32 = 1 << 20;
const CPUID7_ECX_UMIP: u32 = 1 << 2;

/// Turns on SMEP and UMIP where CPUID offers them and returns what CR4 then holds (read back:
/// a host may ignore a bit it offered).
pub fn enable_protection() -> Protection {
    let offered = if cpuid(0).eax >= 7 { __cpuid_count(7, 0) } else { CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 } };
    let mut want = Cr4Flags::empty();
    if offered.ebx & CPUID7_EBX_SMEP != 0 {
        want |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if offered.ecx & CPUID7_ECX_UMIP != 0 {
        want |= Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION;
    }
    // SAFETY: the kernel never executes user pages (SMEP) and never runs the UMIP
    // instructions in ring 3; both bits are only set where CPUID offers them.
    unsafe { Cr4::update(|f| f.insert(want)) };
    let now = Cr4::read();
    Protection {
        smep: now.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        umip: now.contains(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
        smap_offered: offered.ebx & CPUID7_EBX_SMAP != 0,
    }
}
