//! What this KVM does with a second vCPU, measured on a VM of its own before lde uses more than
//! one: the in-kernel irqchip, two vCPUs, 64 KiB of RAM. The bootstrap processor (vCPU 0, put in
//! 32-bit protected mode by lde as a loader would) sends INIT, SIPI, SIPI through its LAPIC to
//! APIC id 1, as xv6 and Linux start their processors; the application processor (vCPU 1, which
//! lde never touches: it waits in KVM's "uninitialized" state) runs a real-mode trampoline at
//! 0x8000 into protected mode, turns its LAPIC on and loads an IDT; the bootstrap processor then
//! sends it a fixed IPI (vector 0x40), whose handler answers. Each step is a port write, timed
//! by lde on the vCPU's thread.
//!
//! The code, assembled with GNU as (`as --32`):
//!
//! ```text
//! BSP at 0x1000 (.code32)                      AP at 0x8000 (.code16, then .code32)
//!   mov $0,%al; out %al,$0xf0   # about to     cli; xor %ax,%ax; mov %ax,%ds
//!   movl $0x1ff, 0xfee000f0     # SVR: on        lgdtl 0x520
//!   movl $0x01000000, 0xfee00310 # ICR: APIC 1
//!   movl $0x4500, 0xfee00300    # INIT           mov %cr0,%eax; or $1,%eax; mov %eax,%cr0
//!   mov $20000,%ecx; 1: pause; loop 1b           ljmpl $0x08, $0x801d
//!   movl $0x4608, 0xfee00300    # SIPI 0x8000  ap32: mov $0x10,%ax; mov %ax,%ds; mov %ax,%ss
//!   mov $2000,%ecx; 2: pause; loop 2b            mov $0x9000,%esp
//!   movl $0x4608, 0xfee00300    # SIPI again     mov $1,%al; out %al,$0xf1   # in protected mode
//!   mov $1,%al; out %al,$0xf0   # sent           movl $0x1ff, 0xfee000f0     # its LAPIC on
//!   3: pause; cmpb $1,0x7000; jne 3b # AP up     lidt 0x528
//!   movl $0x01000000, 0xfee00310                 movb $1, 0x7000             # tell the BSP
//!   movl $0x4040, 0xfee00300    # fixed IPI      sti; 1: hlt; jmp 1b
//!   mov $2,%al; out %al,$0xf0   # IPI sent     handler (0x8100):
//!   4: pause; cmpb $1,0x7001; jne 4b             mov $2,%al; out %al,$0xf1   # IPI received
//!   mov $3,%al; out %al,$0xf0   # answered       movl $0, 0xfee000b0         # EOI
//!   5: hlt; jmp 5b                               movb $1, 0x7001; 2: hlt; jmp 2b
//!
//! The handler never returns: a 32-bit `iret` in ring 0 is an emulation failure on PVM
//! (`KVM_EXIT_INTERNAL_ERROR` at the `iret`), which the lde kernel, in long mode, never meets.
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

const MEM_SIZE: usize = 0x1_0000;
const BSP_ADDR: u64 = 0x1000;
const AP_ADDR: u64 = 0x8000;
const AP_HANDLER_ADDR: u64 = 0x8100;
const GDT_ADDR: u64 = 0x500;
const GDT_POINTER_ADDR: u64 = 0x520;
const IDT_POINTER_ADDR: u64 = 0x528;
const IDT_ADDR: u64 = 0x2000;
/// The vector of the fixed IPI.
const IPI_VECTOR: u64 = 0x40;
/// Ports the bootstrap and the application processor report on.
const BSP_PORT: u16 = 0xf0;
const AP_PORT: u16 = 0xf1;

const BSP_CODE: [u8; 129] = [
    0xb0, 0x00, 0xe6, 0xf0, 0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe, 0xff, 0x01, 0x00, 0x00, 0xc7, 0x05, 0x10, 0x03, 0xe0,
    0xfe, 0x00, 0x00, 0x00, 0x01, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x00, 0x45, 0x00, 0x00, 0xb9, 0x20, 0x4e, 0x00,
    0x00, 0xf3, 0x90, 0xe2, 0xfc, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x08, 0x46, 0x00, 0x00, 0xb9, 0xd0, 0x07, 0x00,
    0x00, 0xf3, 0x90, 0xe2, 0xfc, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x08, 0x46, 0x00, 0x00, 0xb0, 0x01, 0xe6, 0xf0,
    0xf3, 0x90, 0x80, 0x3d, 0x00, 0x70, 0x00, 0x00, 0x01, 0x75, 0xf5, 0xc7, 0x05, 0x10, 0x03, 0xe0, 0xfe, 0x00, 0x00,
    0x00, 0x01, 0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x40, 0x40, 0x00, 0x00, 0xb0, 0x02, 0xe6, 0xf0, 0xf3, 0x90, 0x80,
    0x3d, 0x01, 0x70, 0x00, 0x00, 0x01, 0x75, 0xf5, 0xb0, 0x03, 0xe6, 0xf0, 0xf4, 0xeb, 0xfd,
];
const AP_CODE: [u8; 74] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x66, 0x0f, 0x01, 0x16, 0x20, 0x05, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f,
    0x22, 0xc0, 0x66, 0xea, 0x1d, 0x80, 0x00, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc,
    0x00, 0x90, 0x00, 0x00, 0xb0, 0x01, 0xe6, 0xf1, 0xc7, 0x05, 0xf0, 0x00, 0xe0, 0xfe, 0xff, 0x01, 0x00, 0x00, 0x0f,
    0x01, 0x1d, 0x28, 0x05, 0x00, 0x00, 0xc6, 0x05, 0x00, 0x70, 0x00, 0x00, 0x01, 0xfb, 0xf4, 0xeb, 0xfd,
];
const AP_HANDLER: [u8; 24] = [
    0xb0, 0x02, 0xe6, 0xf1, 0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x05, 0x01, 0x70, 0x00,
    0x00, 0x01, 0xf4, 0xeb, 0xfd,
];

/// What the probe saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// The AP reached protected mode after INIT, SIPI, SIPI.
    pub ap_started: bool,
    /// The AP's handler ran for the fixed IPI.
    pub ipi_delivered: bool,
    /// From the BSP's report before INIT to the AP's first report (in protected mode).
    pub start_after: Option<Duration>,
    /// From the BSP's "IPI sent" to the AP's handler.
    pub ipi_after: Option<Duration>,
    /// What ended a vCPU's run other than the probe's own end, if anything.
    pub trouble: Option<String>,
}

impl Findings {
    /// One line for `lde probe` and the docs.
    pub fn line(&self) -> String {
        let ms = |d: Option<Duration>| match d {
            Some(d) if d >= Duration::from_millis(1) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
            Some(d) => format!("{:.1} us", d.as_secs_f64() * 1e6),
            None => "-".to_string(),
        };
        let mut line = match (self.ap_started, self.ipi_delivered) {
            // The two vCPUs' reports are stamped on two threads: an IPI faster than the
            // sender's next exit can show 0, which is no measurement.
            (true, true) => match self.ipi_after.filter(|d| !d.is_zero()) {
                Some(d) => format!(
                    "INIT-SIPI-SIPI started the second vCPU ({}), a fixed IPI reached it ({} after the sender's exit)",
                    ms(self.start_after),
                    ms(Some(d))
                ),
                None => {
                    format!("INIT-SIPI-SIPI started the second vCPU ({}), a fixed IPI reached it", ms(self.start_after))
                }
            },
            (true, false) => format!(
                "INIT-SIPI-SIPI started the second vCPU ({}), a fixed IPI did not reach it",
                ms(self.start_after)
            ),
            (false, _) => "INIT-SIPI-SIPI did not start the second vCPU".to_string(),
        };
        if let Some(trouble) = &self.trouble {
            line.push_str(&format!(" ({trouble})"));
        }
        line
    }
}

/// A port write of the probe: which vCPU, its value, when.
type Report = (u64, u16, u8, Instant);

extern "C" fn kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Runs the probe; gives up on the AP after `patience`.
pub fn measure(kvm: &Kvm, patience: Duration) -> Result<Findings, kvm_ioctls::Error> {
    // Dropped at the end of this function, after the vCPU threads have been joined.
    let probe = crate::probe_vm::create(kvm, MEM_SIZE)?;
    let (vm, mem) = (&probe.vm, &probe.mem);
    vm.create_irq_chip()?;
    load(mem);
    let cpuid = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)?;
    let bsp = vm.create_vcpu(0)?;
    let ap = vm.create_vcpu(1)?;
    bsp.set_cpuid2(&cpuid)?;
    ap.set_cpuid2(&cpuid)?;
    crate::probe_vm::protected_mode(&bsp, BSP_ADDR, 0xa000)?;
    register_signal_handler(SIGRTMIN(), kick).map_err(|e| kvm_ioctls::Error::new(e.errno()))?;
    let reports: Arc<Mutex<Vec<Report>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let troubles: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads: Vec<_> = [(0, bsp), (1, ap)]
        .into_iter()
        .map(|(id, vcpu)| {
            let (reports, stop, troubles) = (reports.clone(), stop.clone(), troubles.clone());
            std::thread::spawn(move || run(id, vcpu, &reports, &stop, &troubles))
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < patience && !finished(&reports) && threads.iter().all(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Release);
    for thread in threads {
        while !thread.is_finished() {
            let _ = thread.kill(SIGRTMIN());
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = thread.join();
    }
    let reports = reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut findings = findings(&reports);
    let troubles = troubles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if !troubles.is_empty() {
        findings.trouble = Some(troubles.join("; "));
    }
    drop(probe);
    Ok(findings)
}

/// The code, the AP's GDT (null, 32-bit code 0x08, data 0x10) and its IDT (an interrupt gate for
/// [`IPI_VECTOR`]), and the pointers to them.
fn load(mem: &GuestMemoryMmap) {
    let write =
        |addr: u64, bytes: &[u8]| mem.write_slice(bytes, GuestAddress(addr)).expect("inside the probe's memory");
    write(BSP_ADDR, &BSP_CODE);
    write(AP_ADDR, &AP_CODE);
    write(AP_HANDLER_ADDR, &AP_HANDLER);
    let gdt: [u64; 3] = [0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    gdt.iter().enumerate().for_each(|(i, d)| write(GDT_ADDR + 8 * i as u64, &d.to_le_bytes()));
    write(GDT_POINTER_ADDR, &23u16.to_le_bytes());
    write(GDT_POINTER_ADDR + 2, &(GDT_ADDR as u32).to_le_bytes());
    let handler = AP_HANDLER_ADDR;
    let gate = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16) << 48);
    write(IDT_ADDR + 8 * IPI_VECTOR, &gate.to_le_bytes());
    write(IDT_POINTER_ADDR, &((8 * IPI_VECTOR + 7) as u16).to_le_bytes());
    write(IDT_POINTER_ADDR + 2, &(IDT_ADDR as u32).to_le_bytes());
}

/// One vCPU's thread: runs it, noting its port writes, until the probe ends or the vCPU stops.
fn run(id: u64, mut vcpu: VcpuFd, reports: &Mutex<Vec<Report>>, stop: &AtomicBool, troubles: &Mutex<Vec<String>>) {
    let note = |what: String| troubles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(what);
    while !stop.load(Ordering::Acquire) {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let value = data.first().copied().unwrap_or(0);
                reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((
                    id,
                    port,
                    value,
                    Instant::now(),
                ));
            }
            Ok(exit) => {
                let what = format!("{exit:?}");
                let rip = vcpu.get_regs().map_or(0, |r| r.rip);
                note(format!("vCPU {id}: {what} at rip {rip:#x}"));
                return;
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                note(format!("vCPU {id}: KVM_RUN failed: {e}"));
                return;
            }
        }
    }
}

fn finished(reports: &Mutex<Vec<Report>>) -> bool {
    reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|r| r.1 == BSP_PORT && r.2 == 3)
}

/// What the reports say.
fn findings(reports: &[Report]) -> Findings {
    let at = |port: u16, value: u8| reports.iter().find(|r| r.1 == port && r.2 == value).map(|r| r.3);
    let (ap_up, ipi_sent, ipi_in) = (at(AP_PORT, 1), at(BSP_PORT, 2), at(AP_PORT, 2));
    let since = |from: Option<Instant>, to: Option<Instant>| Some(to?.saturating_duration_since(from?));
    Findings {
        ap_started: ap_up.is_some(),
        ipi_delivered: ipi_in.is_some(),
        start_after: since(at(BSP_PORT, 0), ap_up),
        ipi_after: since(ipi_sent, ipi_in),
        trouble: None,
    }
}
