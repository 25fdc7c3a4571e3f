//! The lde kernel.
//!
//! Boot order: PVH entry (arch/x86_64/boot.rs) → `kernel_main` → serial, GDT/TSS, IDT, LAPIC →
//! banner → the work → shutdown through the exit port with a code from `lde_abi::exit`.
#![no_std]
#![no_main]

mod arch;
mod bootinfo;
mod console;
mod traps;

use core::panic::PanicInfo;

use lde_abi::{cmdline as keys, exit};
use lde_kcore::{cmdline, memmap};

use arch::{cpu, gdt, lapic, serial, trap};
use console::Ascii;

/// The kernel's Rust entry, called by `pvh_start` in 64-bit mode on the boot stack.
#[no_mangle]
extern "C" fn kernel_main(start_info_paddr: u64) -> ! {
    serial::init();
    gdt::init();
    trap::init();
    let lapic = lapic::init();

    // SAFETY: called once, interrupts off, boot data still mapped.
    let boot = match unsafe { bootinfo::read(start_info_paddr) } {
        Ok(boot) => boot,
        Err(e) => {
            println!("kernel: unusable PVH start info at {start_info_paddr:#x}: {e}");
            cpu::shutdown(exit::BAD_BOOT);
        }
    };

    // SAFETY: the boot data has been copied; nothing else lives in page 0.
    unsafe { arch::boot::unmap_page0() };

    let vendor = cpu::vendor();
    let hypervisor = cpu::hypervisor_signature();
    let ram_mib = memmap::ram_bytes(boot.memmap()) >> 20;
    print!(
        "lde kernel {}: {} MiB RAM in {} ranges, {} module(s), cpu {}, hypervisor ",
        env!("CARGO_PKG_VERSION"),
        ram_mib,
        boot.memmap().len(),
        boot.modules().len(),
        Ascii(&vendor),
    );
    match hypervisor {
        Some(sig) => print!("{}", Ascii(trim_nul(&sig))),
        None => print!("none"),
    }
    println!(
        ", lapic id {} v{:#x}, cmdline \"{}\"",
        lapic.id,
        lapic.version,
        boot.cmdline()
    );

    match cmdline::value(boot.cmdline(), keys::TEST_KEY) {
        None => {}
        Some(keys::TEST_PANIC) => panic!("test hook {}={}", keys::TEST_KEY, keys::TEST_PANIC),
        Some(keys::TEST_KERNEL_FAULT) => {
            println!("kernel: test hook: executing ud2 in ring 0");
            // SAFETY: deliberately raises #UD; the kernel's handler reports it and shuts down.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        }
        Some(keys::TEST_TRIPLE_FAULT) => {
            println!("kernel: test hook: loading an empty IDT and raising #UD");
            trap::load_empty_idt();
            // SAFETY: with no IDT the #UD cannot be delivered: the CPU triple-faults, on purpose.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        }
        Some(keys::TEST_HANG) => {
            println!("kernel: test hook: halting with interrupts off");
            cpu::halt_forever();
        }
        Some(other) => println!("kernel: unknown test hook {}={other}, ignored", keys::TEST_KEY),
    }

    println!("kernel: nothing to run, shutting down with code {}", exit::SUCCESS);
    cpu::shutdown(exit::SUCCESS)
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("kernel panic: {info}");
    cpu::shutdown(exit::KERNEL_PANIC)
}
