//! The `boot-floor` row: what any VMM on these crates pays to boot a guest on this KVM, measured
//! beside lde's own boots. It opens the KVM device and builds a VM with lde's own
//! `vm::create_vm` (TSS address, memory of lde's default size, the in-kernel irqchip, one vCPU),
//! puts it in flat protected mode at three instructions (`xor %eax,%eax; out %al,$SHUTDOWN_PORT;
//! hlt`), runs it to the port write and drops it: the shutdown mark is taken at the port write, as
//! lde's boot rows take theirs, from before the device is opened.

use std::time::Instant;

use kvm_ioctls::VcpuExit;
use lde_abi::ports::SHUTDOWN_PORT;
use vm_memory::{Bytes, GuestAddress};

use super::Error;
use crate::observe::kvm_stats::KvmStats;
use crate::observe::milestones::{Mark, Milestone, INSN_EMULATION};

/// The row's name.
pub const NAME: &str = "boot-floor";
/// Where the guest's three instructions lie.
const CODE_ADDR: u64 = 0x1000;
/// `xor %eax,%eax; out %al,$SHUTDOWN_PORT; hlt`.
const CODE: [u8; 5] = [0x31, 0xc0, 0xe6, SHUTDOWN_PORT as u8, 0xf4];
const _: () = assert!(SHUTDOWN_PORT <= 0xff, "`out %al,$imm8` reaches the shutdown port");

/// The floor's VM. Field order is drop order: the vCPU and the VM go before the memory they map,
/// however `boot` returns.
struct Bare {
    vcpu: kvm_ioctls::VcpuFd,
    _vm: kvm_ioctls::VmFd,
    mem: vm_memory::GuestMemoryMmap,
}

/// One floor boot: the mark of its port write (wall time from before `/dev/kvm` is opened, the
/// emulated instructions where KVM counts them, one VM exit).
pub fn boot(kvm_device: &std::path::Path) -> Result<Mark, Error> {
    let started = Instant::now();
    let setup = |what: &'static str| move |e| Error::Run(crate::Error::Setup(what, e));
    let kvm = crate::vm::open_kvm(kvm_device)?;
    let (vm, mem, vcpu) = crate::vm::create_vm(&kvm, crate::layout::MEM_DEFAULT_MIB << 20)?;
    let mut bare = Bare { vcpu, _vm: vm, mem };
    let Bare { vcpu, mem, .. } = &mut bare;
    mem.write_slice(&CODE, GuestAddress(CODE_ADDR)).map_err(|_| Error::Guest("the floor's code".into()))?;
    crate::probe_vm::protected_mode(vcpu, CODE_ADDR, 0x8000).map_err(setup("the floor's registers"))?;
    let stats = KvmStats::open(vcpu);
    loop {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(SHUTDOWN_PORT, _)) => break,
            Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => {}
            Ok(other) => return Err(Error::Guest(format!("the floor's guest left with {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(Error::Run(crate::Error::Setup("run the floor's vCPU", e))),
        }
    }
    let wall = started.elapsed();
    let insns = stats.and_then(|s| s.value(INSN_EMULATION));
    Ok(Mark { milestone: Milestone::Shutdown, insns, exits: 1, wall })
}
