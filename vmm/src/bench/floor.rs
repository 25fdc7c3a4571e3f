//! The `boot-floor` row: what any VMM on these crates pays to boot a guest on this KVM, measured
//! beside lde's own boots. It opens `/dev/kvm` and builds a VM the way lde does (TSS address,
//! memory of lde's default size, the in-kernel irqchip, one vCPU), puts it in flat protected
//! mode at three instructions (`xor %eax,%eax; out %al,$SHUTDOWN_PORT; hlt`), runs it to the port
//! write and drops it: the shutdown mark is taken at the port write, as lde's boot rows take
//! theirs, from before `/dev/kvm` is opened.

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

/// One floor boot: the mark of its port write (wall time from before `/dev/kvm` is opened, the
/// emulated instructions where KVM counts them, one VM exit).
pub fn boot(kvm_device: &std::path::Path) -> Result<Mark, Error> {
    let started = Instant::now();
    let setup = |what: &'static str| move |e| Error::Run(crate::Error::Setup(what, e));
    let kvm = crate::vm::open_kvm(kvm_device)?;
    let size = (crate::layout::MEM_DEFAULT_MIB << 20) as usize;
    let probe = crate::probe_vm::create(&kvm, size).map_err(setup("create the floor VM"))?;
    probe.vm.set_tss_address(crate::layout::KVM_TSS_ADDR as usize).map_err(setup("TSS address"))?;
    probe.vm.create_irq_chip().map_err(setup("in-kernel irqchip"))?;
    let mut vcpu = probe.vm.create_vcpu(0).map_err(setup("create the vCPU"))?;
    probe.mem.write_slice(&CODE, GuestAddress(CODE_ADDR)).map_err(|_| Error::Guest("the floor's code".into()))?;
    crate::probe_vm::protected_mode(&vcpu, CODE_ADDR, 0x8000).map_err(setup("the floor's registers"))?;
    let stats = KvmStats::open(&vcpu);
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
