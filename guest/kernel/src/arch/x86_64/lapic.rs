//! The local APIC in xAPIC mode (MMIO at 0xFEE0_0000, identity-mapped uncached).

use core::ptr::{read_volatile, write_volatile};

use x86_64::registers::model_specific::Msr;

use super::vectors::{SPURIOUS_VECTOR, TIMER_VECTOR};

/// The LAPIC id of each processor (by number, 0 = the bootstrap processor), noted before each
/// is started.
static APIC_OF_CPU: [core::sync::atomic::AtomicU8; lde_kcore::mptable::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU8::new(0) }; lde_kcore::mptable::MAX_CPUS];

/// Notes processor `cpu`'s LAPIC id.
pub fn set_id_of(cpu: usize, apic_id: u8) {
    APIC_OF_CPU[cpu].store(apic_id, core::sync::atomic::Ordering::Relaxed);
}

/// Processor `cpu`'s LAPIC id.
pub fn id_of(cpu: usize) -> u8 {
    APIC_OF_CPU[cpu].load(core::sync::atomic::Ordering::Relaxed)
}

/// Physical (and virtual) base of the xAPIC registers.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;

const IA32_APIC_BASE_MSR: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;

const REG_ID: usize = 0x20;
const REG_VERSION: usize = 0x30;
const REG_EOI: usize = 0xb0;
const REG_SPURIOUS: usize = 0xf0;
/// The in-service register: 8 registers of 32 vectors each, 16 bytes apart.
const REG_ISR: usize = 0x100;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
/// Divide configuration value for "divide by 1".
const DIVIDE_BY_1: u32 = 0b1011;
const IA32_TSC_DEADLINE_MSR: u32 = 0x6e0;

fn read(reg: usize) -> u32 {
    // SAFETY: LAPIC_ADDR is mapped uncached by the boot page tables; `reg` is a valid
    // register offset of the 4 KiB xAPIC page.
    unsafe { read_volatile((LAPIC_ADDR as usize + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: as in `read`; xAPIC registers are written with aligned 32-bit stores.
    unsafe { write_volatile((LAPIC_ADDR as usize + reg) as *mut u32, value) }
}

/// Whether the LAPIC has vector `vector` in service: it accepted an interrupt on it that no EOI
/// has ended yet.
pub fn in_service(vector: u8) -> bool {
    let v = usize::from(vector);
    read(REG_ISR + 0x10 * (v / 32)) & (1 << (v % 32)) != 0
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
    LapicInfo { id: read(REG_ID) >> 24, version: read(REG_VERSION) & 0xff }
}

/// This processor's LAPIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signals the end of the current interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Sends this CPU an interrupt on `vector` (fixed delivery, destination shorthand "self"); it
/// is taken once interrupts are enabled.
pub fn self_interrupt(vector: u8) {
    const SHORTHAND_SELF: u32 = 1 << 18;
    write(REG_ICR_LOW, SHORTHAND_SELF | u32::from(vector));
}

/// ICR delivery modes and flags (SDM Vol. 3, 11.6.1).
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;

/// Sends an inter-processor interrupt to LAPIC id `apic_id`: writes the ICR (high half first:
/// the write of the low half sends it), then waits, a bounded while, until the LAPIC has
/// taken it.
fn send_ipi(apic_id: u8, low: u32) {
    write(REG_ICR_HIGH, u32::from(apic_id) << 24);
    write(REG_ICR_LOW, low);
    for _ in 0..1000 {
        if read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
            break;
        }
        core::hint::spin_loop();
    }
}

/// A fixed interrupt on `vector` to LAPIC id `apic_id`, without waiting for the LAPIC to
/// take it (the round-trip measurement waits for the answer instead).
pub fn send_fixed(apic_id: u8, vector: u8) {
    write(REG_ICR_HIGH, u32::from(apic_id) << 24);
    write(REG_ICR_LOW, u32::from(vector));
}

/// IPIs each processor sent through [`send_to`].
static IPIS_SENT: [core::sync::atomic::AtomicU64; lde_kcore::mptable::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; lde_kcore::mptable::MAX_CPUS];

/// The kernel's one way to send processor `cpu` an IPI on `vector` ([`send_fixed`] to its LAPIC
/// id), counted for the sender.
pub fn send_to(cpu: usize, vector: u8) {
    send_fixed(id_of(cpu), vector);
    IPIS_SENT[super::percpu::index()].fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// IPIs processor `cpu` sent.
pub fn ipis_sent(cpu: usize) -> u64 {
    IPIS_SENT[cpu].load(core::sync::atomic::Ordering::Relaxed)
}

/// INIT, level-triggered, asserted: resets processor `apic_id` into the wait-for-SIPI state.
pub fn send_init(apic_id: u8) {
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL | ICR_ASSERT);
}

/// The INIT level de-assert that follows [`send_init`] (older processors need it; KVM ignores it).
pub fn send_init_deassert(apic_id: u8) {
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL);
}

/// A startup IPI: processor `apic_id`, waiting after INIT, starts in real mode at
/// `vector << 12`.
pub fn send_startup(apic_id: u8, vector: u8) {
    send_ipi(apic_id, ICR_STARTUP | u32::from(vector));
}

/// Whether the CPU offers the TSC-deadline timer mode (CPUID.1:ECX[24]).
pub fn tsc_deadline_supported() -> bool {
    super::cpu::cpuid(1).ecx & (1 << 24) != 0
}

/// Starts a masked one-shot countdown from the largest count (for calibration).
pub fn start_free_running() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, u32::MAX);
}

/// The timer's current count.
pub fn current_count() -> u32 {
    read(REG_TIMER_CURRENT)
}

/// Stops the timer.
pub fn stop() {
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, 0);
}

/// Interrupts every `count` timer ticks (divide by 1).
pub fn start_periodic(count: u32) {
    start_periodic_on(TIMER_VECTOR, count);
}

/// Interrupts on `vector` every `count` timer ticks (divide by 1).
pub fn start_periodic_on(vector: u8, count: u32) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(vector));
    write(REG_TIMER_INITIAL, count.max(1));
}

/// Interrupts once after `count` timer ticks.
pub fn start_one_shot(count: u32) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    write(REG_TIMER_INITIAL, count.max(1));
}

/// Switches the timer to TSC-deadline mode (no interrupt until [`set_deadline`]).
pub fn start_deadline_mode() {
    write(REG_LVT_TIMER, LVT_TSC_DEADLINE | u32::from(TIMER_VECTOR));
}

/// Interrupts when the TSC reaches `tsc` (TSC-deadline mode).
pub fn set_deadline(tsc: u64) {
    // SAFETY: IA32_TSC_DEADLINE exists when tsc_deadline_supported(); writing it only arms the
    // timer.
    unsafe { Msr::new(IA32_TSC_DEADLINE_MSR).write(tsc) };
}
