//! The I/O APIC (MMIO at 0xFEC0_0000, identity-mapped uncached): routes the serial port's IRQ 4
//! and the disks' interrupts to LAPIC vectors.

use core::ptr::{read_volatile, write_volatile};

/// Physical (and virtual) base of the I/O APIC.
const IOAPIC_ADDR: u64 = 0xfec0_0000;
const REG_SELECT: u64 = 0x00;
const REG_WINDOW: u64 = 0x10;
/// First redirection-table register; entry n is at 0x10 + 2n (low) and 0x11 + 2n (high).
const REDIRECTION_BASE: u32 = 0x10;
const MASKED: u32 = 1 << 16;

fn write(reg: u32, value: u32) {
    // SAFETY: the I/O APIC's select/window registers, mapped uncached by the boot page tables.
    unsafe {
        write_volatile((IOAPIC_ADDR + REG_SELECT) as *mut u32, reg);
        write_volatile((IOAPIC_ADDR + REG_WINDOW) as *mut u32, value);
    }
}

fn read(reg: u32) -> u32 {
    // SAFETY: as in `write`.
    unsafe {
        write_volatile((IOAPIC_ADDR + REG_SELECT) as *mut u32, reg);
        read_volatile((IOAPIC_ADDR + REG_WINDOW) as *const u32)
    }
}

/// Inputs the kernel routes: the first I/O APIC's 24 (a second one, as QEMU's microvm can
/// have, is not used: `scripts/qemu.sh` turns it off).
pub const INPUTS: u32 = 24;

/// Routes input `irq` (edge, active high) to `vector` on LAPIC 0; the other inputs keep what
/// they have (masked, as at reset, unless routed here). An input the I/O APIC does not have is
/// left alone.
pub fn route(irq: u32, vector: u8) {
    if irq >= INPUTS || irq >= entries() {
        return;
    }
    write(REDIRECTION_BASE + 2 * irq + 1, 0); // destination: APIC id 0
    write(REDIRECTION_BASE + 2 * irq, u32::from(vector)); // fixed, physical, edge, high
}

/// Number of redirection entries.
fn entries() -> u32 {
    ((read(1) >> 16) & 0xff) + 1
}

/// Masks every input (the kernel then routes the ones it serves with [`route`]).
pub fn mask_all() {
    for i in 0..entries().min(INPUTS) {
        write(REDIRECTION_BASE + 2 * i, MASKED);
        write(REDIRECTION_BASE + 2 * i + 1, 0);
    }
}
