//! A trap the kernel has no answer for (a fault in ring 0, a machine check): say which stack
//! overflowed if the fault hit a guard page, print the trap and every register, and shut down.

use lde_abi::exit_code as exit;
use lde_kcore::trap::mnemonic;

use crate::arch::entry::TrapFrame;
use crate::arch::{cpu, gdt};
use crate::println;
use crate::stacks::{ap_guards, guard_pages};

/// A trap the kernel has no answer for: print everything and shut down.
pub fn fatal(frame: &TrapFrame) -> ! {
    let cr2 = cpu::cr2();
    if let Some((i, (name, _))) = guard_pages().iter().enumerate().find(|(_, (_, page))| cr2 & !0xfff == *page) {
        match i {
            0..=3 => println!("kernel: the {name} overflowed into its guard page"),
            _ => println!("kernel: the {name} {} overflowed into its guard page", i - 4),
        }
    }
    if let Some(ap) = (0..gdt::MAX_APS).find(|&ap| ap_guards(ap).contains(&(cr2 & !0xfff))) {
        println!("kernel: a stack of cpu {} overflowed into its guard page", ap + 1);
    }
    let ring = if frame.came_from_user() { 3 } else { 0 };
    println!(
        "kernel: fatal trap {} (vector {}) in ring {ring}, error {:#x}, rip {:#x}, cr2 {:#x}",
        mnemonic(frame.vector),
        frame.vector,
        frame.error,
        frame.rip,
        cr2,
    );
    dump(frame);
    cpu::shutdown(exit::KERNEL_PANIC)
}

/// Prints every saved register.
pub fn dump(f: &TrapFrame) {
    println!("  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", f.rax, f.rbx, f.rcx, f.rdx);
    println!("  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}", f.rsi, f.rdi, f.rbp, f.rsp);
    println!("  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}", f.r8, f.r9, f.r10, f.r11);
    println!("  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}", f.r12, f.r13, f.r14, f.r15);
    println!("  rip {:016x} cs {:04x} rflags {:08x} ss {:04x}", f.rip, f.cs, f.rflags, f.ss);
}
