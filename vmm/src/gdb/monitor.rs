//! lde's GDB `monitor` commands: registers GDB does not show, the debug-register slots and
//! `int3`s, and the guest clock while stopped.

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

use super::target::VcpuTarget;
use crate::vcpu;

impl MonitorCmd for VcpuTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        match cmd.trim_ascii() {
            b"regs" => {
                let cpus = self.cpus.len();
                for cpu in 0..cpus {
                    if cpus > 1 {
                        outputln!(out, "vCPU {cpu} (thread {}):", cpu + 1);
                    }
                    for line in vcpu::dump_registers(&self.fd(cpu)).lines() {
                        outputln!(out, "{}", line.trim_start());
                    }
                }
            }
            b"slots" => {
                for (i, slot) in self.slots.0.iter().enumerate() {
                    match slot {
                        Some(s) => outputln!(out, "dr{i} {:#x} {:?}", s.addr, s.what),
                        None => outputln!(out, "dr{i} free"),
                    }
                }
                for addr in self.int3s.addrs() {
                    outputln!(out, "int3 {addr:#x}");
                }
            }
            b"clock" => outputln!(out, "{}", self.clock.describe()),
            _ => {
                outputln!(out, "lde monitor commands:");
                outputln!(
                    out,
                    "  monitor regs   each vCPU's general, control (cr0 cr2 cr3 cr4 efer) and segment registers, gdt, idt"
                );
                outputln!(
                    out,
                    "  monitor slots  which debug registers (DR0-DR3) hold which breakpoint or watchpoint, and the int3s"
                );
                outputln!(out, "  monitor clock  how the guest's TSC is kept from counting while GDB holds the vCPU");
            }
        }
        Ok(())
    }
}
