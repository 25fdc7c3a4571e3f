//! What this KVM's guest debugging delivers, measured before GDB attaches: a probe VM (64 KiB,
//! no irqchip, one vCPU per case, in real mode) runs the same six instructions three times —
//! with an execute breakpoint in DR0 (`KVM_GUESTDBG_USE_HW_BP`), with a write watchpoint in DR0,
//! and with an `int3` written over one of them (`KVM_GUESTDBG_USE_SW_BP`) — and records which
//! ones stop the vCPU with `KVM_EXIT_DEBUG`. lde serves GDB's breakpoint kinds with what did.
//!
//! Measured (docs/platform.md): hardware KVM stops in all three cases. PVM stops at the execute
//! breakpoint only (and an `int3` in ring-0 code is fatal there, whatever the probe says). The
//! nested SVM host of scripts/nested.sh (QEMU 7.2 with TCG) stops in none: TCG loads DR7 from
//! the VMCB at VMRUN without arming its breakpoints, and checks a guest's `int3` against the
//! INTn intercept rather than the #BP one, so the `int3` reaches the guest's own handler.

use kvm_bindings::{
    kvm_guest_debug, kvm_guest_debug_arch, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use kvm_ioctls::{Kvm, VcpuExit, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The probe's memory: real mode, the IVT at 0.
const PROBE_MEM_SIZE: usize = 0x1_0000;
/// Where the probe's code starts (CS = 0).
const CODE_ADDR: u64 = 0x1000;
/// `nop` ×4; `mov byte [0x3000], 1`; `out 0x10, al`; `hlt`.
const CODE: [u8; 12] = [0x90, 0x90, 0x90, 0x90, 0xc6, 0x06, 0x00, 0x30, 0x01, 0xe6, 0x10, 0xf4];
/// The instruction the execute breakpoint and the `int3` sit on (the third `nop`).
const BREAK_ADDR: u64 = CODE_ADDR + 2;
/// The byte the probe writes.
const WATCH_ADDR: u64 = 0x3000;
/// The guest's own #DB and #BP handlers: `out 0x11, al; hlt` and `out 0x13, al; hlt`.
const DB_HANDLER_ADDR: u64 = 0x0500;
const BP_HANDLER_ADDR: u64 = 0x0600;
/// Ports: the code ran on past the breakpoint; the guest's #DB or #BP handler ran.
const RAN_ON_PORT: u16 = 0x10;
/// DR7: G0, GE; R/W0 = 01 (data writes) for the watchpoint (LEN0 = 00, one byte).
const DR7_G0_GE: u64 = (1 << 1) | (1 << 9);
const DR7_RW0_WRITE: u64 = 0b01 << 16;

/// Which kinds of guest debugging stopped the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    /// An execute breakpoint in DR0 stopped the vCPU before the instruction.
    pub hw_breakpoint: bool,
    /// A write watchpoint in DR0 stopped the vCPU after the write.
    pub watchpoint: bool,
    /// An `int3` under `KVM_GUESTDBG_USE_SW_BP` exited to lde instead of reaching the guest.
    pub int3_exits: bool,
}

impl Measured {
    /// What the manuals promise (assumed when the probe cannot run).
    pub const ARCHITECTURAL: Measured = Measured { hw_breakpoint: true, watchpoint: true, int3_exits: true };

    /// The probe's result in a few words, for lde's messages.
    pub fn findings(&self) -> String {
        let said = |stopped: bool, what: &str| format!("{what} {}", if stopped { "stopped it" } else { "did not" });
        format!(
            "{}, {}, {}",
            said(self.hw_breakpoint, "a DR0 breakpoint"),
            said(self.watchpoint, "a DR0 write watchpoint"),
            match self.int3_exits {
                true => "an int3 exited to lde",
                false => "an int3 reached the guest's own handler",
            }
        )
    }
}

/// How lde serves GDB's `break` (a software breakpoint, packet Z0) on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftwareBreaks {
    /// `int3` written into guest memory (`KVM_GUESTDBG_USE_SW_BP`), as on hardware KVM.
    Int3,
    /// A debug register, as `hbreak`: PVM (an `int3` in ring 0 kills the guest there), or a
    /// KVM that stops at debug registers but hands an `int3` to the guest.
    DebugRegisters,
    /// Neither stops this KVM.
    Refused,
}

impl Measured {
    /// How `break` is served; `ring0_int3_fatal` on PVM.
    pub fn software_breaks(&self, ring0_int3_fatal: bool) -> SoftwareBreaks {
        match (self.int3_exits && !ring0_int3_fatal, self.hw_breakpoint) {
            (true, _) => SoftwareBreaks::Int3,
            (false, true) => SoftwareBreaks::DebugRegisters,
            (false, false) => SoftwareBreaks::Refused,
        }
    }

    /// One line for the attach message: how each of GDB's kinds is served here.
    pub fn serving(&self, ring0_int3_fatal: bool) -> String {
        let software = match self.software_breaks(ring0_int3_fatal) {
            SoftwareBreaks::Int3 => "`break` writes int3 into guest memory",
            SoftwareBreaks::DebugRegisters if ring0_int3_fatal => {
                "`break` takes a debug register (int3 in ring 0 is fatal on PVM)"
            }
            SoftwareBreaks::DebugRegisters => "`break` takes a debug register",
            SoftwareBreaks::Refused => "`break` is refused",
        };
        let hardware = match self.hw_breakpoint {
            true => "`hbreak` takes a debug register",
            false => "`hbreak` is refused",
        };
        let watch = match self.watchpoint && !ring0_int3_fatal {
            true => "`watch` takes a debug register",
            false => "`watch` is refused",
        };
        format!("breakpoints: {software}, {hardware}, {watch} (measured on this KVM: {})", self.findings())
    }
}

/// How a probe run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// `KVM_EXIT_DEBUG`.
    Stopped,
    /// Anything else: ran on, the guest's own handler ran, or an exit the probe does not expect.
    NotStopped,
}

/// Runs the three probes on a VM of its own.
pub fn measure() -> Result<Measured, kvm_ioctls::Error> {
    let probe_vm = crate::probe_vm::create(&Kvm::new()?, PROBE_MEM_SIZE)?;
    let (vm, mem) = (&probe_vm.vm, &probe_vm.mem);
    let hw = debug(KVM_GUESTDBG_USE_HW_BP, BREAK_ADDR, DR7_G0_GE);
    let watch = debug(KVM_GUESTDBG_USE_HW_BP, WATCH_ADDR, DR7_G0_GE | DR7_RW0_WRITE);
    let sw = debug(KVM_GUESTDBG_USE_SW_BP, 0, 0);
    Ok(Measured {
        hw_breakpoint: probe(vm, mem, 0, &hw, false)? == Ending::Stopped,
        watchpoint: probe(vm, mem, 1, &watch, false)? == Ending::Stopped,
        int3_exits: probe(vm, mem, 2, &sw, true)? == Ending::Stopped,
    })
}

fn debug(kind: u32, dr0: u64, dr7: u64) -> kvm_guest_debug {
    let mut debugreg = [0u64; 8];
    debugreg[0] = dr0;
    debugreg[7] = dr7;
    kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | kind, pad: 0, arch: kvm_guest_debug_arch { debugreg } }
}

/// One case on a fresh vCPU: the code (with `int3` over the breakpoint's instruction if asked),
/// the guest's own #DB and #BP handlers in the IVT, and `debug` armed.
fn probe(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    id: u64,
    debug: &kvm_guest_debug,
    int3: bool,
) -> Result<Ending, kvm_ioctls::Error> {
    let write =
        |addr: u64, bytes: &[u8]| mem.write_slice(bytes, GuestAddress(addr)).expect("inside the probe's memory");
    write(CODE_ADDR, &CODE);
    if int3 {
        write(BREAK_ADDR, &[0xcc]);
    }
    write(WATCH_ADDR, &[0]);
    // IVT entries (offset, segment 0) for vectors 1 and 3.
    write(4, &(DB_HANDLER_ADDR as u32).to_le_bytes());
    write(12, &(BP_HANDLER_ADDR as u32).to_le_bytes());
    write(DB_HANDLER_ADDR, &[0xe6, 0x11, 0xf4]);
    write(BP_HANDLER_ADDR, &[0xe6, 0x13, 0xf4]);

    let mut vcpu = vm.create_vcpu(id)?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let regs = kvm_bindings::kvm_regs { rip: CODE_ADDR, rflags: 0x2, rsp: 0x8000, ..Default::default() };
    vcpu.set_regs(&regs)?;
    vcpu.set_guest_debug(debug)?;
    // A few exits at most: the code makes one port write, or the guest's handler does.
    for _ in 0..4 {
        match vcpu.run() {
            Ok(VcpuExit::Debug(_)) => return Ok(Ending::Stopped),
            Ok(VcpuExit::IoOut(port, _)) => {
                log::debug!(
                    "gdb: probe {id}: port {port:#x} ({})",
                    if port == RAN_ON_PORT { "ran on" } else { "guest handler" }
                );
                return Ok(Ending::NotStopped);
            }
            Ok(exit) => {
                log::debug!("gdb: probe {id}: {exit:?}");
                return Ok(Ending::NotStopped);
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Ending::NotStopped)
}
