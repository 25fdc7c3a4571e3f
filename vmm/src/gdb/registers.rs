//! GDB's x86-64 register file (`X86_64CoreRegs`) to and from KVM's vCPU registers.

use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kvm_ioctls::VcpuFd;

/// Reads the general, segment-selector and x87/SSE registers (the last only where KVM gives
/// them).
pub fn read(vcpu: &VcpuFd, regs: &mut X86_64CoreRegs) -> Result<(), kvm_ioctls::Error> {
    let r = vcpu.get_regs()?;
    let s = vcpu.get_sregs()?;
    regs.regs =
        [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15];
    regs.rip = r.rip;
    regs.eflags = r.rflags as u32;
    regs.segments.cs = u32::from(s.cs.selector);
    regs.segments.ss = u32::from(s.ss.selector);
    regs.segments.ds = u32::from(s.ds.selector);
    regs.segments.es = u32::from(s.es.selector);
    regs.segments.fs = u32::from(s.fs.selector);
    regs.segments.gs = u32::from(s.gs.selector);
    if let Ok(fpu) = vcpu.get_fpu() {
        for (st, fpr) in regs.st.iter_mut().zip(fpu.fpr.iter()) {
            st.copy_from_slice(&fpr[..10]);
        }
        regs.fpu.fctrl = u32::from(fpu.fcw);
        regs.fpu.fstat = u32::from(fpu.fsw);
        regs.fpu.ftag = u32::from(fpu.ftwx);
        regs.fpu.fop = u32::from(fpu.last_opcode);
        regs.fpu.fioff = fpu.last_ip as u32;
        regs.fpu.fooff = fpu.last_dp as u32;
        for (xmm, bytes) in regs.xmm.iter_mut().zip(fpu.xmm.iter()) {
            *xmm = u128::from_le_bytes(*bytes);
        }
        regs.mxcsr = fpu.mxcsr;
    }
    Ok(())
}

/// Writes the general registers, RIP and RFLAGS, and the x87/SSE state; segment selectors are
/// not written (a selector alone would not load its descriptor).
pub fn write(vcpu: &VcpuFd, regs: &X86_64CoreRegs) -> Result<(), kvm_ioctls::Error> {
    let mut r = vcpu.get_regs()?;
    let g = &regs.regs;
    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    r.rip = regs.rip;
    r.rflags = (r.rflags & !0xffff_ffff) | u64::from(regs.eflags);
    vcpu.set_regs(&r)?;
    let mut fpu = vcpu.get_fpu()?;
    for (fpr, st) in fpu.fpr.iter_mut().zip(regs.st.iter()) {
        fpr[..10].copy_from_slice(st);
    }
    for (bytes, xmm) in fpu.xmm.iter_mut().zip(regs.xmm.iter()) {
        *bytes = xmm.to_le_bytes();
    }
    fpu.mxcsr = regs.mxcsr;
    vcpu.set_fpu(&fpu)
}
