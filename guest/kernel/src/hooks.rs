//! The kernel's test hooks (`lde.test=<name>` on the command line): deliberate crashes, hangs
//! and protection checks that the tests drive. Each prints one `kernel: test hook:` line first.

use core::sync::atomic::Ordering;

use lde_abi::user::USER_BASE;
use lde_abi::{cmdline as keys, exit_code as exit};
use lde_kcore::args::Spec;

use crate::arch::mem::Frame;
use crate::arch::paging;
use crate::arch::{boot, cpu, idt, lapic};
use crate::exec::SpawnError;
use crate::mm::Frames;
use crate::process::KERNEL;
use crate::{counters, exec, println};

/// Runs the hook the command line names, if any. Called at boot, before any program starts,
/// with the kernel's protections in place.
pub fn run(hook: Option<&str>) {
    match hook {
        None => {}
        Some(keys::TEST_PANIC) => panic!("test hook {}={}", keys::TEST_KEY, keys::TEST_PANIC),
        Some(keys::TEST_KERNEL_FAULT) => {
            println!("kernel: test hook: executing ud2 in ring 0");
            cpu::raise_invalid_opcode();
        }
        Some(keys::TEST_TRIPLE_FAULT) => {
            println!("kernel: test hook: loading an empty IDT and raising #UD");
            idt::load_empty_idt();
            // With no IDT the #UD cannot be delivered: the CPU triple-faults, on purpose.
            cpu::raise_invalid_opcode();
        }
        Some(keys::TEST_HANG) => {
            println!("kernel: test hook: halting with interrupts off");
            cpu::halt_forever();
        }
        Some(keys::TEST_WRITE_TEXT) => {
            println!("kernel: test hook: writing to kernel text");
            boot::write_text();
        }
        Some(keys::TEST_EXECUTE_DATA) => {
            println!("kernel: test hook: calling into kernel data");
            boot::execute_data();
        }
        Some(keys::TEST_STACK_OVERFLOW) => {
            println!("kernel: test hook: recursing until the boot stack overflows");
            let depth = recurse(core::hint::black_box(1 << 20));
            println!("kernel: recursed {depth} deep without a fault");
        }
        Some(keys::TEST_STRAY_INTERRUPT) => {
            println!("kernel: test hook: sending this CPU an interrupt on vector {:#x}", keys::STRAY_VECTOR);
            lapic::self_interrupt(keys::STRAY_VECTOR);
        }
        Some(keys::TEST_EXECUTE_USER) => {
            println!("kernel: test hook: calling a user page from ring 0");
            execute_user();
            println!("kernel: test hook: the user page ran in ring 0 (no SMEP)");
        }
        Some(keys::TEST_HOST_NMI) => println!("kernel: test hook: expecting NMIs from the host"),
        Some(keys::TEST_DIRTY_RAM) => println!("kernel: test hook: RAM was left dirty by the loader"),
        Some(keys::TEST_DIE_MID_UPDATE) => {
            println!("kernel: test hook: shutting down in the middle of a stats update");
            counters::update(|page| {
                page.ticks = keys::TORN_TICKS;
                cpu::shutdown(exit::KERNEL_PANIC)
            })
        }
        Some(keys::TEST_HOSTILE_STATS) => {
            println!("kernel: test hook: writing a stats page of u64::MAX counters and wrapping rings");
            hostile_stats();
            println!("{}", keys::HOSTILE_STATS_DONE);
            cpu::halt_forever();
        }
        Some(keys::TEST_SPAWN_OOM) => {
            println!("kernel: test hook: starting hello with 0, 1, 2, ... free frames");
            spawn_out_of_memory();
        }
        Some(keys::TEST_NO_SHOOTDOWN) => {
            println!("kernel: test hook: no TLB shootdowns");
            crate::shootdown::disable();
        }
        Some(other) => println!("kernel: unknown test hook {}={other}, ignored", keys::TEST_KEY),
    }
}

/// The stats page of [`keys::TEST_HOSTILE_STATS`]: everything a hostile kernel can make the
/// host read, then its rings' counts wrapped past `u64::MAX`.
fn hostile_stats() {
    use lde_abi::stats::{
        Event, ProcStats, ENDED, END_KILLED, EVENTS, EV_SWITCH_IN, EV_SYSCALL, EV_TICK, STATE_RUNNING,
    };
    const MAX: u64 = u64::MAX;
    let mut proc = ProcStats {
        pid: 1,
        state: STATE_RUNNING,
        end: END_KILLED,
        end_value: u32::MAX,
        end_rip: MAX,
        ..ProcStats::EMPTY
    };
    proc.name[..7].copy_from_slice(b"hostile");
    (proc.ticks, proc.scheduled, proc.voluntary, proc.involuntary, proc.faults, proc.user_cycles) =
        (MAX, MAX, MAX, MAX, MAX, MAX);
    proc.syscalls = [MAX; lde_abi::stats::CALLS_MAX];
    let event =
        |n: u64, tsc: u64, kind: u8| Event { seq: n.wrapping_add(1), tsc, kind, cpu: u8::MAX, pid: 1, arg: u32::MAX };
    counters::update(|page| {
        (page.tsc_hz, page.boot_tsc, page.now_tsc, page.ticks) = (1, 0, MAX, MAX);
        (page.syscall_arch, page.syscall_recovered, page.int80_arch, page.int80_recovered) = (MAX, MAX, MAX, MAX);
        (page.switches, page.kills, page.spawned, page.idle_cycles, page.frames_in_use) = (MAX, MAX, MAX, MAX, MAX);
        (page.tick_cycles, page.tick_count, page.switch_cycles, page.switch_count) = (MAX, MAX, MAX, MAX);
        page.traps = [MAX; 256];
        page.calls = [MAX; lde_abi::stats::CALLS_MAX];
        (page.cpus_online, page.lock_acquisitions, page.lock_contended, page.lock_spins) = (u32::MAX, MAX, MAX, MAX);
        page.tlb_shootdowns = MAX;
        page.cpus = [lde_abi::stats::CpuStats {
            online: u32::MAX,
            current_pid: u32::MAX,
            ticks: MAX,
            switches: MAX,
            user_cycles: MAX,
            idle_cycles: MAX,
            ipis_sent: MAX,
            ipis_received: MAX,
        }; lde_abi::stats::MAX_CPUS];
        page.procs[0] = proc;
        // The newest entry of each ring is index u64::MAX - 1 (seq u64::MAX).
        let mut ended = proc;
        ended.pid = 2;
        page.ended[((MAX - 1) as usize) & (ENDED - 1)] = lde_abi::stats::Ended { seq: MAX, proc: ended };
        page.ended_written = MAX;
        for (n, tsc, kind) in [(MAX - 3, MAX, EV_SWITCH_IN), (MAX - 2, 0, EV_SYSCALL), (MAX - 1, MAX - 1, EV_TICK)] {
            page.events[(n as usize) & (EVENTS - 1)] = event(n, tsc, kind);
        }
        page.events_written = MAX;
    });
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < keys::HOSTILE_STATS_HOLD_TSC {
        core::hint::spin_loop();
    }
    // The counts wrap: entries 0, 1 and 2 after u64::MAX of them.
    counters::update(|page| {
        for (n, tsc, kind) in [(0, MAX, EV_SWITCH_IN), (1, 0, EV_SYSCALL), (2, 5, EV_TICK)] {
            page.events[n as usize] = event(n, tsc, kind);
        }
        page.events_written = 3;
        page.ended_written = 0;
    });
}

/// Runs the part of the hook the command line names that comes once every process has ended,
/// before the kernel reports and shuts down.
pub fn before_shutdown(hook: Option<&str>) {
    if hook == Some(keys::TEST_HOST_NMI) {
        // An NMI wakes the halt; the count is the NMI handler's, which lde cannot fake.
        while counters::NMIS.load(Ordering::Relaxed) < keys::HOST_NMI_COUNT {
            cpu::wait_for_interrupt();
        }
        println!("kernel: test hook: at least {} NMIs counted", keys::HOST_NMI_COUNT);
    }
}

/// Recurses `n` levels deep (the stack-overflow test hook asks for far more than the stack
/// holds), 1 KiB of stack a level.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let mut pad = [0u8; 1024];
    pad[0] = n as u8;
    core::hint::black_box(&mut pad);
    if n == 0 {
        return 0;
    }
    recurse(core::hint::black_box(n - 1)) + u64::from(pad[0])
}

/// Maps a page holding `ret` (0xc3) at the bottom of user space and calls it from ring 0.
fn execute_user() {
    let space = KERNEL.with(|k| exec::code_page(k, &[0xc3])).expect("a frame for the test hook");
    space.activate();
    // SAFETY: deliberately calls user memory from ring 0: SMEP makes it a #PF (reported as a
    // fatal kernel fault); without SMEP the byte is a `ret` and the call returns.
    let f: extern "C" fn() = unsafe { core::mem::transmute(USER_BASE as *const ()) };
    f();
    paging::activate_kernel();
    KERNEL.with(|k| space.destroy(&mut k.frames));
}

/// Starts `hello` with no free frame, then one more each time, until it starts: every point at
/// which `spawn` can run out of memory, each of which must give back every frame it took.
fn spawn_out_of_memory() {
    let spec = Spec::from_text(b"hello").expect("a valid spec");
    KERNEL.with(|k| {
        let mut held = Held::take_all(&mut k.frames);
        let (mut failures, mut leaks) = (0u32, 0u32);
        let started = loop {
            let in_use = k.frames.in_use();
            match exec::spawn(k, &spec, 0) {
                Ok(pid) => break Some(pid),
                Err(SpawnError::OutOfMemory) => failures += 1,
                Err(e) => {
                    println!("kernel: test hook: spawn failed: {e}");
                    break None;
                }
            }
            leaks += u32::from(k.frames.in_use() != in_use);
            if !held.give_one(&mut k.frames) {
                break None;
            }
        };
        while held.give_one(&mut k.frames) {}
        println!(
            "kernel: test hook: spawn ran out of memory {failures} times, kept frames {leaks} times, then started pid {}",
            started.unwrap_or(0)
        );
    });
}

/// Frames taken from the allocator and held, chained through their first qword.
struct Held(u64);

impl Held {
    fn take_all(frames: &mut Frames) -> Held {
        let mut held = Held(0);
        while let Some(frame) = frames.alloc_zeroed() {
            let addr = frame.into_addr();
            // SAFETY: the frame is ours, held as its address until `give_one` frees it.
            unsafe { (addr as *mut u64).write(held.0) };
            held.0 = addr;
        }
        held
    }

    /// Frees one held frame; false if none was left.
    fn give_one(&mut self, frames: &mut Frames) -> bool {
        if self.0 == 0 {
            return false;
        }
        // SAFETY: `self.0` heads the chain of frames `take_all` took; it leaves the chain here.
        let frame = unsafe { Frame::from_addr(self.0) };
        // SAFETY: the frame is ours (above); its first qword links the chain.
        self.0 = unsafe { (frame.addr() as *const u64).read() };
        frames.free(frame);
        true
    }
}
