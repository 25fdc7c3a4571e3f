//! The lde kernel.
//!
//! Boot order: PVH entry (arch/x86_64/boot.rs) → `kernel_main` → serial, GDT/TSS, IDT, LAPIC →
//! banner → the other processors (with `lde.cpus`) → the work → shutdown through the shutdown
//! port with a code from `lde_abi::exit_code`.
#![no_std]
#![no_main]

mod arch;
mod bootinfo;
mod config;
mod console;
mod counters;
mod disk;
mod doors;
mod exec;
mod fatal;
mod hooks;
mod idle;
mod input;
mod ipi_roundtrip;
mod kernel_lock;
mod mm;
mod process;
mod resched;
mod sched;
mod shootdown;
mod smp;
mod stacks;
mod stats;
mod sync;
mod syscall;
mod tick;
mod time;
mod trap;
mod usermem;

use core::panic::PanicInfo;
use core::sync::atomic::Ordering;

use lde_abi::exit_code as exit;
use lde_kcore::memmap;

use arch::lapic::LapicInfo;
use arch::{cpu, gdt, idt, lapic, pic, serial, syscall_entry};
use bootinfo::BootInfo;
use config::Config;
use console::Line;
use process::KERNEL;

/// The kernel's Rust entry, called by `pvh_start` in 64-bit mode on the boot stack: the boot
/// sequence, one step a line in the order they run.
///
/// Each step runs once, and is inlined but for the banner: as calls, the steps cost the boot ~80
/// more emulated instructions where ring 0 is emulated (PVM), and the banner's formatting costs
/// ~50 fewer out of line than inside `kernel_main` (`lde bench --insns`, boot-empty/banner).
#[no_mangle]
extern "C" fn kernel_main(start_info_paddr: u64) -> ! {
    let lapic = bring_up_cpu();
    let boot = read_boot_info(start_info_paddr);
    let config = configure(boot.cmdline());
    protect_memory();
    print_banner(boot, &lapic);
    init_frames_and_programs(boot, &config);
    open_doors();
    hooks::run(config.test);
    time::init(&config);
    smp::start_others(config.cpus);
    input::init(config.input_none);
    input::enable_interrupt();
    disk::probe(config.disks());
    start_programs(&config);
    let failed = sched::run_scheduler();
    shut_down(config.test, failed)
}

/// The console, then the CPU's descriptor tables and interrupt controllers.
#[inline(always)] // a step of `kernel_main`
fn bring_up_cpu() -> LapicInfo {
    // The UART (reset state: 8N1, interrupts off) serves input, and output where lde's
    // console port does not answer (QEMU); only then is it programmed.
    if !console::init() {
        serial::init();
    }
    gdt::init();
    idt::init();
    pic::disable();
    lapic::init()
}

/// The PVH start info's copy, or the end of the run if it is unusable.
#[inline(always)] // a step of `kernel_main`
fn read_boot_info(start_info_paddr: u64) -> &'static BootInfo {
    // SAFETY: called once, interrupts off, boot data still mapped.
    match unsafe { bootinfo::read(start_info_paddr) } {
        Ok(boot) => boot,
        Err(e) => {
            println!("kernel: unusable PVH start info at {start_info_paddr:#x}: {e}");
            cpu::shutdown(exit::BAD_BOOT);
        }
    }
}

/// Reads the command line, and sets the switches that take effect at once.
#[inline(always)] // a step of `kernel_main`
fn configure(cmdline: &'static str) -> Config {
    let config = config::parse(cmdline);
    cpu::MILESTONES.store(config.milestones, Ordering::Relaxed);
    counters::VERBOSE.store(config.verbose, Ordering::Relaxed);
    config
}

/// Unmaps page 0, makes the kernel's image W^X and unmaps the stacks' guard pages.
#[inline(always)] // a step of `kernel_main`
fn protect_memory() {
    // SAFETY: the boot data has been copied; nothing else lives in page 0.
    unsafe { arch::boot::unmap_page0() };
    // SAFETY: at boot, from kernel text; the guard pages hold nothing.
    unsafe { arch::boot::protect_kernel(&stacks::guard_pages().map(|(_, page)| page)) };
}

/// The banner line: RAM, the boot modules, the CPU, the hypervisor, the LAPIC, the command line.
#[inline(never)] // see `kernel_main`
fn print_banner(boot: &BootInfo, lapic: &LapicInfo) {
    let vendor = cpu::vendor();
    let hypervisor = cpu::hypervisor_signature();
    let ram_mib = memmap::ram_bytes(boot.memmap()) >> 20;
    let mut banner = Line::new();
    banner
        .str(concat!("lde kernel ", env!("CARGO_PKG_VERSION"), ": "))
        .dec(ram_mib)
        .str(" MiB RAM in ")
        .dec(boot.memmap().len() as u64)
        .str(" ranges, ")
        .dec(boot.modules().len() as u64)
        .str(" module(s), cpu ")
        .ascii(&vendor)
        .str(", hypervisor ");
    match hypervisor {
        Some(sig) => banner.ascii(trim_nul(&sig)),
        None => banner.str("none"),
    };
    banner
        .str(", lapic id ")
        .dec(u64::from(lapic.id))
        .str(" v")
        .hex(u64::from(lapic.version))
        .str(", cmdline \"")
        .str(boot.cmdline())
        .str("\"")
        .end();
    cpu::milestone(lde_abi::ports::MILESTONE_BANNER);
}

/// Gives the frame allocator the RAM that neither the kernel nor the initrd holds, and the
/// kernel the initrd and the programs the command line asks for.
#[inline(always)] // a step of `kernel_main`
fn init_frames_and_programs(boot: &BootInfo, config: &Config) {
    let initrd = initrd(boot.memmap(), boot.modules());
    let reserved = (initrd.as_ptr() as u64, initrd.as_ptr() as u64 + initrd.len() as u64);
    KERNEL.with(|k| {
        k.programs.initrd = initrd;
        k.frames.init(boot.memmap(), kernel_image().1, reserved, config.zeroed_ram);
        k.programs.runs = config.runs;
    });
}

/// The ways into the kernel from ring 3: the `syscall` entry, the CPU's protections, the
/// doors' self-test, and what the last two found, in the stats page.
#[inline(always)] // a step of `kernel_main`
fn open_doors() {
    syscall_entry::init_syscall();
    let protection = cpu::enable_protection();
    doors::self_test();
    counters::update(|page| {
        page.protection = protection.bits();
        page.doors = doors::encoded();
        page.cpus_online = 1;
        page.cpus[0].online = 1;
    });
}

/// Starts the command line's programs and the timer; with no program to run, the run ends here.
#[inline(always)] // a step of `kernel_main`
fn start_programs(config: &Config) {
    KERNEL.with(exec::spawn_pending);
    time::start();
    if config.programs == 0 {
        println!("kernel: nothing to run, shutting down with code {}", exit::SUCCESS);
        cpu::shutdown(exit::SUCCESS);
    }
}

/// After the last process: stops the timer, publishes the final counters (and prints them where
/// asked), and shuts down with the exit code that says whether any program failed.
#[inline(always)] // a step of `kernel_main`
fn shut_down(test: Option<&str>, failed: bool) -> ! {
    time::stop();
    if kernel_lock::active() {
        KERNEL.with(|k| resched::publish(&mut k.stats));
    }
    hooks::before_shutdown(test);
    let code = if failed { exit::PROCESS_FAILED } else { exit::SUCCESS };
    let now = cpu::rdtsc();
    let (in_use, available) = KERNEL.with(|k| (k.frames.in_use(), k.frames.available()));
    counters::update(|page| {
        page.now_tsc = now;
        page.frames_in_use = in_use;
        page.finished = 1;
        page.exit_code = code;
        page.traps[arch::vectors::NMI_VECTOR as usize] += counters::NMIS.load(Ordering::Relaxed);
    });
    console::start_line();
    if counters::verbose() {
        counters::print(time::missed_ticks, time::punctual_ticks());
        println!("stats: frames in_use={in_use} available={available}");
    }
    Line::new().str("kernel: all processes ended, shutting down with code ").dec(u64::from(code)).end();
    cpu::shutdown(code)
}

/// The initrd (the first PVH module), if the kernel may read it where it lies.
fn initrd(memmap: &[lde_abi::boot::MemmapEntry], modules: &[lde_abi::boot::ModlistEntry]) -> &'static [u8] {
    let Some(m) = modules.first() else { return &[] };
    match memmap::module_range(memmap, m.paddr, m.size, kernel_image()) {
        Ok((start, end)) if start < end => {
            // SAFETY: `module_range` checked that [start, end) is identity-mapped RAM of the
            // memory map, clear of page 0 (unmapped after boot) and of the kernel image (its
            // tests: guest/kcore/src/memmap.rs); the frame allocator is told to leave it alone
            // (`Frames::init`'s reserved range) and nothing writes it.
            unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) }
        }
        Ok(_) => &[],
        Err(e) => {
            println!("kernel: ignoring the initrd at {:#x} ({} bytes): {e:?}", m.paddr, m.size);
            &[]
        }
    }
}

/// The kernel image, `[start, end)` (the linker script's `__kernel_start` and `__kernel_end`).
fn kernel_image() -> (u64, u64) {
    extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__kernel_end) as u64)
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
