//! Everything that touches x86 hardware. The only place in the kernel with `asm`.

pub mod ap_boot;
pub mod boot;
pub mod cpu;
pub mod entry;
pub mod fpu;
pub mod frame;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod ipi;
pub mod lapic;
pub mod mem;
pub mod paging;
pub mod percpu;
pub mod pic;
pub mod serial;
pub mod switch;
pub mod syscall_entry;
pub mod vectors;
