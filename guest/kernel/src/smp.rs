//! The other processors: with `lde.cpus=N` on the command line the bootstrap processor reads
//! the MP table and starts each application processor as xv6's `startothers` and Linux's
//! `wakeup_secondary_cpu_via_init` do (INIT, then two startup IPIs, with the MP
//! specification's delays, timed with the TSC), then waits for it to check in, a bounded while.
//! Without `lde.cpus` nothing here runs and no line is printed: a one-processor boot is the same
//! as before the kernel knew of others.
//!
//! Before it starts any, processor 0 puts the big kernel lock in use (kernel_lock.rs).
//!
//! An application processor (arch/x86_64/ap_boot.rs brings it to [`ap_main`]) loads a GDT and
//! TSS of its own (and with them its per-CPU data), the application processors' IDT, its
//! `syscall` MSRs, turns its LAPIC on, checks in and halts with interrupts on, waking only to
//! answer the IPI of the round-trip measurement (`ipi_roundtrip.rs`, which processor 0 runs
//! once all are up), until processor 0 lets it go ([`GO`]). Then it starts its timer, takes the
//! lock and runs the scheduler: every processor runs processes from the one run queue. When no
//! process is left it wakes the others (processor 0 shuts the machine down) and halts.
//!
//! Idle processors are woken by a reschedule IPI when a process becomes ready (resched.rs).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use lde_abi::boot::{MemmapEntry, MEMMAP_RAM};
use lde_kcore::acpi;
use lde_kcore::mptable::{self, MpError, Processors, MAX_CPUS, MP_FLOATING_ADDR};

use crate::arch::ap_boot::{self, TRAMPOLINE_ADDR, TRAMPOLINE_VECTOR};
use crate::arch::cpu::{self, rdtsc};
use crate::arch::vectors::RESCHED_VECTOR;
use crate::arch::{boot, gdt, idt, ipi, lapic, paging, syscall_entry};
use crate::kernel_lock::{self, KERNEL_LOCK};
use crate::{bootinfo, counters, ipi_roundtrip, println, resched, sched, stacks, time};

/// The TSC at which processor `cpu` (0 = the bootstrap processor) checked in (0: not yet).
static ONLINE_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The processor number of each LAPIC id, set before that processor is started (0: none).
static CPU_OF_APIC: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];

/// Set once processor 0 lets the others run processes.
static GO: AtomicBool = AtomicBool::new(false);

/// How long the bootstrap processor waits for a processor to check in, from its INIT (where
/// every ring-0 instruction is emulated, one checks in ~0.5 ms after its SIPIs; nested hosts
/// under TCG are slower still).
const START_TIMEOUT_MS: u64 = 500;
/// The MP specification's wait after INIT (B.4: 10 ms) and after each startup IPI (200 µs).
const INIT_DELAY_US: u64 = 10_000;
const STARTUP_DELAY_US: u64 = 200;

/// The BIOS area where a firmware's MP floating pointer may lie (MP spec 4), searched when the
/// last KiB of base memory has none (QEMU's SeaBIOS puts it there).
const BIOS_AREA: (u64, u64) = (0xf_0000, 0x10_0000);
/// Where an RSDP may lie (ACPI 5.2.5.1: the BIOS read-only area), which holds the MP area too.
const ACPI_AREA: (u64, u64) = (0xe_0000, 0x10_0000);
/// The end of what the boot page tables map as RAM (arch/x86_64/boot.rs).
const MAPPED_END: u64 = 0xc000_0000;

/// Starts the processors of the MP table if the command line says there are several (`cpus`,
/// the value of `lde.cpus`).
#[inline(always)] // a step of `kernel_main`: one test where `lde.cpus` is absent
pub fn start_others(cpus: Option<&str>) {
    if let Some(cpus) = cpus {
        start_all(cpus);
    }
}

#[inline(never)]
fn start_all(cpus: &str) {
    let (bsp_apic_id, memmap) = (lapic::id(), bootinfo::copied().memmap());
    let Ok(wanted) = cpus.parse::<usize>() else {
        println!("kernel: ignoring lde.cpus={cpus}: not a number");
        return;
    };
    let processors = match find_processors(bsp_apic_id as u8) {
        Ok(found) => found,
        Err(e) => {
            println!("kernel: no usable MP table or MADT ({e:?}): only cpu 0 runs");
            return;
        }
    };
    let trampoline = (TRAMPOLINE_ADDR, TRAMPOLINE_ADDR + 4096);
    if !is_ram(memmap, trampoline) || !is_ram(memmap, (stacks::AP_STACKS_ADDR, stacks::AP_STACKS_END)) {
        println!("kernel: low memory for the trampoline and stacks is not RAM: only cpu 0 runs");
        return;
    }
    if processors.count < wanted {
        println!("kernel: lde.cpus={wanted} but the firmware's tables name {} processor(s)", processors.count);
    }
    // SAFETY: the trampoline's page is RAM (checked above) that nothing else uses (ap_boot.rs),
    // and no processor runs yet.
    unsafe { ap_boot::install() };
    // SAFETY: the bootstrap processor, after `idt::init`, no other running yet.
    unsafe { idt::init_ap() };
    lapic::set_id_of(0, bsp_apic_id as u8);
    // SAFETY: once, on the bootstrap processor, interrupts off, no other processor running.
    unsafe { kernel_lock::activate() };
    let others = processors.apic_ids[..processors.count].iter().filter(|&&id| u32::from(id) != bsp_apic_id);
    let mut started = 0;
    for (ap, &apic_id) in others.take(wanted.min(MAX_CPUS).saturating_sub(1)).enumerate() {
        if start(ap + 1, apic_id) {
            started |= 1u32 << (ap + 1);
        }
    }
    if started & 0b10 != 0 {
        let before = ipi::pongs();
        ipi_roundtrip::measure();
        resched::count_received(1, ipi::pongs() - before);
    }
    // Let them schedule: each takes the lock once this processor first lets go of it (its
    // first process's return to ring 3, or its idle loop).
    GO.store(true, Ordering::Release);
    for cpu in (1..MAX_CPUS).filter(|c| started & (1 << c) != 0) {
        lapic::send_to(cpu, RESCHED_VECTOR);
    }
}

/// Sends processor `cpu` (LAPIC id `apic_id`) INIT, SIPI, SIPI and waits for it to check in;
/// whether it did.
fn start(cpu: usize, apic_id: u8) -> bool {
    let ap = cpu - 1;
    // SAFETY: the stacks' low RAM (stacks.rs) holds nothing; no processor uses it yet.
    unsafe { boot::unmap_pages(&stacks::ap_guards(ap)) };
    CPU_OF_APIC[usize::from(apic_id)].store(cpu as u8, Ordering::Relaxed);
    lapic::set_id_of(cpu, apic_id);
    ap_boot::set_stack(apic_id, stacks::ap_stack_top(ap));
    let started = rdtsc();
    lapic::send_init(apic_id);
    delay_us(INIT_DELAY_US);
    lapic::send_init_deassert(apic_id);
    for _ in 0..2 {
        lapic::send_startup(apic_id, TRAMPOLINE_VECTOR);
        delay_us(STARTUP_DELAY_US);
    }
    let deadline = started + time::ms_to_tsc(START_TIMEOUT_MS);
    let online = loop {
        match ONLINE_TSC[cpu].load(Ordering::Acquire) {
            0 if rdtsc() > deadline => {
                println!("kernel: cpu {cpu} did not start");
                return false;
            }
            0 => core::hint::spin_loop(),
            tsc => break tsc,
        }
    };
    // KVM keeps the processors' TSCs in step; a processor's TSC behind ours counts as 0.
    let us = online.saturating_sub(started).saturating_mul(1_000_000) / time::tsc_hz().max(1);
    println!("kernel: cpu {cpu} online (apic id {apic_id}) after {us} us");
    true
}

/// Waits `us` microseconds (by the TSC).
fn delay_us(us: u64) {
    let end = rdtsc() + us.saturating_mul(time::tsc_hz()) / 1_000_000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Whether `[start, end)` lies in one RAM range of the memory map.
fn is_ram(memmap: &[MemmapEntry], (start, end): (u64, u64)) -> bool {
    memmap.iter().any(|e| e.kind == MEMMAP_RAM && e.addr <= start && end <= e.addr.saturating_add(e.size))
}

/// The processors: from the MP table in the last KiB of base memory (lde's), else from ACPI's
/// MADT (a firmware's, found through the RSDP in the BIOS area: QEMU's SeaBIOS lists every
/// processor there, and only the first in its MP table), else from an MP table in the BIOS area.
fn find_processors(bsp_apic_id: u8) -> Result<Processors, MpError> {
    // SAFETY: both areas are identity-mapped low memory (arch/x86_64/boot.rs), only read.
    let (base, bios) = unsafe {
        (
            core::slice::from_raw_parts(MP_FLOATING_ADDR as *const u8, 1024),
            core::slice::from_raw_parts(ACPI_AREA.0 as *const u8, (ACPI_AREA.1 - ACPI_AREA.0) as usize),
        )
    };
    if let Ok(config) = mptable::find_floating(base) {
        return mp_config(u64::from(config));
    }
    if let Ok(found) = madt(bios, bsp_apic_id) {
        return Ok(found);
    }
    let config = u64::from(mptable::find_floating(&bios[(BIOS_AREA.0 - ACPI_AREA.0) as usize..])?);
    mp_config(config)
}

/// The MADT's processors, through the RSDP in `area` and the RSDT it names.
fn madt(area: &[u8], bsp_apic_id: u8) -> Result<Processors, MpError> {
    let rsdt = acpi::find_rsdt(area)?;
    let rsdt = table(u64::from(rsdt), b"RSDT").ok_or(MpError::BadConfigTable)?;
    for entry in acpi::rsdt_entries(rsdt)? {
        if let Some(madt) = table(u64::from(entry), b"APIC") {
            return acpi::parse_madt(madt, bsp_apic_id);
        }
    }
    Err(MpError::NoProcessor)
}

/// The ACPI table of `signature` at `addr`, whole, if it lies in identity-mapped RAM (below
/// the MMIO hole) and its header says so.
fn table(addr: u64, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let header_end = addr.checked_add(acpi::HEADER as u64)?;
    if addr < 0x1000 || header_end > MAPPED_END {
        return None;
    }
    // SAFETY: [addr, addr + 36) is identity-mapped (checked above), only read.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, acpi::HEADER) };
    let length = acpi::table_length(header, signature)?;
    (addr + length as u64 <= MAPPED_END).then(|| {
        // SAFETY: as above, for the table's whole length (at most acpi::TABLE_MAX).
        unsafe { core::slice::from_raw_parts(addr as *const u8, length) }
    })
}

/// The processors of the MP configuration table at `config`.
fn mp_config(config: u64) -> Result<Processors, MpError> {
    if !(0x1000..BIOS_AREA.1).contains(&config) {
        return Err(MpError::BadConfigTable);
    }
    // SAFETY: [config, 1 MiB) is identity-mapped low memory; `parse_config` reads no further
    // than the table's own length.
    let table = unsafe { core::slice::from_raw_parts(config as *const u8, (BIOS_AREA.1 - config) as usize) };
    mptable::parse_config(table)
}

/// An application processor's Rust entry, called by `ap_start64` (ap_boot.rs) on its own stack
/// with interrupts off.
#[no_mangle]
extern "C" fn ap_main(apic_id: u32) -> ! {
    let cpu = usize::from(CPU_OF_APIC[apic_id as usize & 0xff].load(Ordering::Acquire));
    if cpu == 0 {
        cpu::halt_forever();
    }
    let ap = cpu - 1;
    // SAFETY: this processor's own, once, interrupts off.
    unsafe { gdt::init_ap(ap, x86_64::VirtAddr::new(stacks::ap_ist_top(ap))) };
    idt::load_ap();
    lapic::init();
    // Its timer stays masked (as after INIT) until it may run processes; the I/O APIC routes
    // every device to processor 0.
    lapic::stop();
    syscall_entry::init_syscall();
    ONLINE_TSC[cpu].store(rdtsc().max(1), Ordering::Release);
    // Halted with interrupts on: the round trip's IPIs are answered by their own stub, and
    // processor 0's reschedule IPI after `GO` wakes it.
    while !GO.load(Ordering::Acquire) {
        cpu::wait_for_interrupt();
    }
    // Everything from here on uses the kernel's state (the clock for the timer's rate first):
    // under the lock.
    KERNEL_LOCK.enter();
    time::start_ap();
    counters::update(|page| {
        page.cpus[cpu].online = 1;
        page.cpus_online += 1;
    });
    sched::run_scheduler();
    // No process is left: processor 0 shuts down once it sees so. This one keeps no process's
    // page tables while it halts for good (a shootdown could not reach it).
    paging::activate_kernel();
    resched::kick_all();
    KERNEL_LOCK.leave();
    cpu::halt_forever()
}

const _: () = assert!(gdt::MAX_APS == MAX_CPUS - 1);
