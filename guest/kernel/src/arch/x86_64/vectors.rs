//! Every vector the kernel knows by number: the exceptions it treats specially, the interrupts
//! it routes, the `int 0x80` door and the `syscall` pseudo-vector. A leaf: the IDT, the entry
//! stubs, the devices that raise them and `trap.rs`, which gives them meaning, all import it and
//! it imports nothing of the kernel.

/// Non-maskable interrupt.
pub const NMI_VECTOR: u64 = 2;
/// Invalid opcode (#UD); on PVM also `int 0x80` from ring 3.
pub const UD_VECTOR: u64 = 6;
/// Segment not present (#NP).
pub const NP_VECTOR: u64 = 11;
/// General protection (#GP).
pub const GP_VECTOR: u64 = 13;
/// Page fault (#PF); on PVM also `syscall` from ring 3.
pub const PF_VECTOR: u64 = 14;
/// Machine check (#MC).
pub const MC_VECTOR: u64 = 18;

/// The LAPIC timer (processor 0's).
pub const TIMER_VECTOR: u8 = 0x20;
/// The LAPIC timer of every other processor (`tick::ap_timer`).
pub const AP_TIMER_VECTOR: u8 = 0x21;
/// The serial port's IRQ 4, as the I/O APIC delivers it.
pub const SERIAL_VECTOR: u8 = 0x24;
/// The first disk's interrupt, as the I/O APIC delivers it; disk `i` has `DISK_VECTOR_BASE + i`
/// (`lde_abi::virtio::MAX_DISKS` of them).
pub const DISK_VECTOR_BASE: u8 = 0x28;
/// First vector of the primary 8259 PIC after remapping (the secondary follows at +8).
pub const PIC_VECTOR_BASE: u8 = 0x30;
/// The `int 0x80` system-call door (its number is part of the ABI).
pub const INT80_VECTOR: u8 = lde_abi::syscall::INT80_VECTOR;
/// Spurious LAPIC interrupts; their handler sends no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// The pseudo-vector in the frame of a system call that came through `syscall` (above every
/// real vector, so no gate can produce it).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The IPI of the round-trip measurement (`ipi_roundtrip.rs`): its gate leads to the stub in
/// `ipi.rs`, not to the common trap path, and only an application processor takes it.
pub const IPI_VECTOR: u8 = 0xf0;
/// The reschedule IPI: a processor that made a process ready wakes an idle one with it
/// (`smp::kick_idle`); its handler only acknowledges it, and the woken idle loop picks.
pub const RESCHED_VECTOR: u8 = 0xf1;
/// The TLB shootdown IPI (shootdown.rs): answered without the big kernel lock, whose holder
/// waits for the answer.
pub const SHOOTDOWN_VECTOR: u8 = 0xf2;
