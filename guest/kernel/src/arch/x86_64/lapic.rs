//! The local APIC in xAPIC mode (MMIO at 0xFEE0_0000, identity-mapped uncached).

use core::ptr::{read_volatile, write_volatile};

use x86_64::registers::model_specific::Msr;

/// Physical (and virtual) base of the xAPIC registers.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// Vector of spurious LAPIC interrupts; its handler sends no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE_MSR: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;

const REG_ID: usize = 0x20;
const REG_VERSION: usize = 0x30;
const REG_EOI: usize = 0xb0;
const REG_SPURIOUS: usize = 0xf0;

fn read(reg: usize) -> u32 {
    // SAFETY: LAPIC_ADDR is mapped uncached by the boot page tables; `reg` is a valid
    // register offset of the 4 KiB xAPIC page.
    unsafe { read_volatile((LAPIC_ADDR as usize + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: as in `read`; xAPIC registers are written with aligned 32-bit stores.
    unsafe { write_volatile((LAPIC_ADDR as usize + reg) as *mut u32, value) }
}

/// What `init` found.
pub struct LapicInfo {
    pub id: u32,
    pub version: u32,
}

/// Enables the LAPIC in xAPIC mode with the spurious vector set.
pub fn init() -> LapicInfo {
    let mut base = Msr::new(IA32_APIC_BASE_MSR);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the global enable bit at the
    // unchanged base address keeps the LAPIC in xAPIC mode.
    unsafe {
        let value = base.read();
        if value & APIC_BASE_ENABLE == 0 {
            base.write(value | APIC_BASE_ENABLE);
        }
    }
    write(REG_SPURIOUS, 0x100 | u32::from(SPURIOUS_VECTOR));
    LapicInfo {
        id: read(REG_ID) >> 24,
        version: read(REG_VERSION) & 0xff,
    }
}

/// Signals the end of the current interrupt.
#[allow(dead_code)]
pub fn eoi() {
    write(REG_EOI, 0);
}
