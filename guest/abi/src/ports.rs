//! I/O ports the kernel uses to talk to the VMM (and to QEMU, which offers the same devices).

/// Base of the first 16550 UART (COM1); the serial console.
pub const SERIAL_PORT: u16 = 0x3f8;
/// Number of registers of the 16550 UART.
pub const SERIAL_PORT_SIZE: u16 = 8;
/// Legacy IRQ line of COM1.
pub const SERIAL_IRQ: u32 = 4;

/// The shutdown port: a 32-bit `out` of an exit code here ends the VM with that code.
///
/// Under QEMU this is the `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`), which makes QEMU
/// exit with `(code << 1) | 1`; `scripts/qemu.sh` undoes that.
pub const SHUTDOWN_PORT: u16 = 0xf4;
/// Width of the shutdown port in bytes.
pub const SHUTDOWN_PORT_SIZE: u16 = 4;

/// The input-status port (lde only): an 8-bit read returns [`INPUT_OPEN`] while lde's standard
/// input may still bring bytes, [`INPUT_ENDED`] once it has closed and every byte has been
/// handed to the UART. Anything else (QEMU's floating bus reads 0xff) means no such device:
/// input never ends.
pub const INPUT_STATUS_PORT: u16 = 0xf8;
/// Input may still come.
pub const INPUT_OPEN: u8 = 0;
/// Input has ended.
pub const INPUT_ENDED: u8 = 1;

/// The bench port (lde only): writes are counted and dropped, reads return 0. The kernel lets
/// ring 3 use it (TSS I/O bitmap) so `lde bench` can measure a VM exit to the VMM from a
/// process.
pub const BENCH_PORT: u16 = 0xf9;

/// The milestone port (lde only): with `lde.milestones=1` on the command line the kernel writes
/// one byte here at each boot milestone ([`MILESTONE_BANNER`], [`MILESTONE_FIRST_USER`]), so
/// that the VMM can read KVM's counters at that moment (`lde bench`'s boot rows). Without the
/// key the kernel never touches it.
pub const MILESTONE_PORT: u16 = 0xfa;
/// Milestone: the kernel's banner line has been written.
pub const MILESTONE_BANNER: u8 = 1;
/// Milestone: the scheduler is about to enter ring 3 for the first time.
pub const MILESTONE_FIRST_USER: u8 = 2;
/// Written (with `lde.milestones=1`) just before and just after the timed samples of each
/// two-processor measurement at boot (the IPI round trips, then the one-page TLB shootdowns), so
/// that the host can read each vCPU's emulated instructions over exactly those samples.
pub const MILESTONE_TIMED_START: u8 = 3;
pub const MILESTONE_TIMED_END: u8 = 4;

/// The console port (lde only): the kernel's output path that costs one VM exit a line (or a
/// `write`) instead of one a byte through the UART.
///
/// A 32-bit `in` returns [`CONSOLE_MAGIC`] where lde serves it (QEMU's floating bus reads all
/// ones: the kernel then keeps to the UART). A 32-bit `out` of [`console_doorbell`]`(page, len)`
/// hands lde the `len` bytes (1 to 4096) at the start of the 4 KiB-aligned guest-physical
/// `page`; lde writes them to its console as the UART would have received them from the
/// kernel, each `\n` as `\r\n`.
pub const CONSOLE_PORT: u16 = 0xfb;
/// What a read of [`CONSOLE_PORT`] returns under lde.
pub const CONSOLE_MAGIC: u32 = u32::from_le_bytes(*b"LDEc");
/// Most bytes one doorbell hands over: one page.
pub const CONSOLE_CHUNK: usize = 4096;

/// The doorbell value for `len` bytes (1 to [`CONSOLE_CHUNK`]) at the 4 KiB-aligned `page`
/// below 4 GiB: the page's address with `len - 1` in its low 12 bits.
pub const fn console_doorbell(page: u32, len: usize) -> u32 {
    page | (len as u32 - 1)
}

/// The page and length a doorbell value names (the inverse of [`console_doorbell`]).
pub const fn console_chunk(doorbell: u32) -> (u32, usize) {
    (doorbell & !0xfff, (doorbell & 0xfff) as usize + 1)
}
