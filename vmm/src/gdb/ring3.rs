//! A single step from ring 0 to ring 3 on a host blind to ring 3 (PVM runs ring 3 natively and
//! reports neither a single step nor a breakpoint there): stepped by KVM, an `iretq` or a
//! `sysretq` to ring 3 would run the process on to its next kernel entry. lde carries that one
//! instruction out itself, as the SDM describes it for a return to a 64-bit ring-3 context, and
//! GDB sees the process's first instruction.

use kvm_bindings::{kvm_msr_entry, kvm_segment, Msrs};

use super::target::VcpuTarget;

/// `iretq` (REX.W CF) and `sysretq` (REX.W 0F 07).
const IRETQ: [u8; 2] = [0x48, 0xcf];
const SYSRETQ: [u8; 3] = [0x48, 0x0f, 0x07];
/// RFLAGS bits iretq never sets from the frame here: RF, VM; bit 1 always reads one.
const RFLAGS_CLEAR: u64 = (1 << 16) | (1 << 17);
/// The RFLAGS bits `sysretq` takes from R11 (the SDM's mask: no RF, VM, VIF... beyond these).
const SYSRET_RFLAGS: u64 = 0x3c_7fd7;
/// STAR: `sysretq` loads CS from bits 48-63 + 16 and SS from bits 48-63 + 8, both RPL 3.
const STAR_MSR: u32 = 0xc000_0081;

/// The flat 64-bit ring-3 code segment and data segment with these selectors (what KVM
/// reports when the guest is stopped in ring 3 there).
fn user_segments(cs: u16, ss: u16) -> (kvm_segment, kvm_segment) {
    let flat = kvm_segment { base: 0, limit: 0xffff_ffff, present: 1, dpl: 3, s: 1, g: 1, ..Default::default() };
    (
        kvm_segment { selector: cs, type_: 0xb, l: 1, db: 0, ..flat },
        kvm_segment { selector: ss, type_: 0x3, l: 0, db: 1, ..flat },
    )
}

impl VcpuTarget<'_> {
    /// Carries out vCPU `cpu`'s `iretq` or `sysretq` to ring 3, if that is its next instruction
    /// in ring 0. Returns whether it did.
    pub(super) fn step_return_to_user(&mut self, cpu: usize) -> Result<bool, kvm_ioctls::Error> {
        let regs = self.fd(cpu).get_regs()?;
        if self.fd(cpu).get_sregs()?.cs.dpl != 0 {
            return Ok(false);
        }
        let mut code = [0u8; 3];
        let fetched = self.read_as(cpu, regs.rip, &mut code).unwrap_or(0);
        if fetched >= 2 && code[..2] == IRETQ {
            self.step_iretq(cpu)
        } else if fetched == 3 && code == SYSRETQ {
            self.step_sysretq(cpu)
        } else {
            Ok(false)
        }
    }

    /// `iretq`: RIP, CS, RFLAGS, RSP and SS from the frame at RSP.
    fn step_iretq(&mut self, cpu: usize) -> Result<bool, kvm_ioctls::Error> {
        let mut regs = self.fd(cpu).get_regs()?;
        let mut frame = [0u8; 40];
        if self.read_as(cpu, regs.rsp, &mut frame).ok() != Some(40) {
            return Ok(false);
        }
        let word = |i: usize| u64::from_le_bytes(frame[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (rip, cs, rflags, rsp, ss) = (word(0), word(1), word(2), word(3), word(4));
        if cs & 3 != 3 || ss & 3 != 3 {
            return Ok(false);
        }
        regs.rip = rip;
        regs.rsp = rsp;
        regs.rflags = (rflags & !RFLAGS_CLEAR) | 0x2;
        self.land(cpu, regs, (cs as u16, ss as u16), "iretq")
    }

    /// `sysretq`: RIP from RCX, RFLAGS from R11, the selectors from STAR; RSP as it is.
    fn step_sysretq(&mut self, cpu: usize) -> Result<bool, kvm_ioctls::Error> {
        let mut regs = self.fd(cpu).get_regs()?;
        let mut msrs =
            Msrs::from_entries(&[kvm_msr_entry { index: STAR_MSR, ..Default::default() }]).expect("one entry fits");
        if self.fd(cpu).get_msrs(&mut msrs)? != 1 {
            return Ok(false);
        }
        let base = (msrs.as_slice()[0].data >> 48) as u16;
        regs.rip = regs.rcx;
        regs.rflags = (regs.r11 & SYSRET_RFLAGS) | 0x2;
        self.land(cpu, regs, ((base + 16) | 3, (base + 8) | 3), "sysretq")
    }

    /// Puts vCPU `cpu` in ring 3 with `regs` and the selectors `(cs, ss)`.
    fn land(
        &mut self,
        cpu: usize,
        regs: kvm_bindings::kvm_regs,
        (cs, ss): (u16, u16),
        what: &str,
    ) -> Result<bool, kvm_ioctls::Error> {
        let fd = self.fd(cpu);
        let mut sregs = fd.get_sregs()?;
        (sregs.cs, sregs.ss) = user_segments(cs, ss);
        fd.set_sregs(&sregs)?;
        fd.set_regs(&regs)?;
        log::debug!(
            "gdb: carried out the {what} to ring 3 at {:#x} on vCPU {cpu} (this host reports no step in ring 3)",
            regs.rip
        );
        Ok(true)
    }
}
