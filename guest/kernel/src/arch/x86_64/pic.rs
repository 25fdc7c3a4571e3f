//! The legacy 8259 PICs: moved away from the exception vectors and masked. Firmware (QEMU's
//! option ROM) leaves them at vector 8 with the timer unmasked, which would look like a double
//! fault; lde takes interrupts through the LAPIC and IOAPIC instead.

use x86_64::instructions::port::Port;

use super::vectors::PIC_VECTOR_BASE;

fn outb(port: u16, value: u8) {
    // SAFETY: the 8259 command and data ports; writing them affects only the PICs.
    unsafe { Port::<u8>::new(port).write(value) }
}

/// Remaps both PICs to PIC_VECTOR_BASE.. and masks every line.
pub fn disable() {
    // ICW1: init, ICW4 follows; ICW2: vector base; ICW3: cascade on IRQ2; ICW4: 8086 mode.
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, PIC_VECTOR_BASE);
    outb(0xa1, PIC_VECTOR_BASE + 8);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    // OCW1: mask all lines.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
