//! What each trap means: system calls through either door (including the two PVM deviations
//! it recovers), timer ticks and preemption, serial input, killing processes that break the
//! rules, and reporting faults in the kernel itself.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lde_abi::exit;
use lde_abi::stats::EV_TICK;
use lde_abi::syscall::INT80_VECTOR;
use lde_abi::user::{USER_BASE, USER_END};
use lde_kcore::proc::End;
use lde_kcore::trap::mnemonic;

use crate::arch::cpu::{self, rdtsc};
use crate::arch::entry::{self, syscall_entry_address, TrapFrame, SYSCALL_VECTOR};
use crate::arch::lapic::{self, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::arch::{boot, gdt, serial};
use crate::process::{self, KERNEL};
use crate::sched::{self, end_current, yield_current};
use crate::stats::{self, Arrival};
use crate::time::{self, TimerMode};
use crate::{doors, exec, input, println, syscall};
use lde_kcore::proc::MAX_PROCS;

pub const NMI_VECTOR: u64 = 2;
const NP_VECTOR: u64 = 11;
const GP_VECTOR: u64 = 13;
/// Error-code bit of a fault in delivering through an IDT gate (the vector is in bits 3-10).
const ERROR_IDT: u64 = 0b10;
pub const UD_VECTOR: u64 = 6;
const MC_VECTOR: u64 = 18;
pub const PF_VECTOR: u64 = 14;
/// Vector the I/O APIC delivers the serial port's IRQ 4 on.
pub const SERIAL_VECTOR: u8 = 0x24;
/// RFLAGS bits `sysretq` takes from R11, the ones a process may set: CF PF AF ZF SF TF DF OF
/// NT AC ID (never IOPL, RF, VM).
const USER_RFLAGS_MASK: u64 = 0x24_4dd5;
const RFLAGS_IF: u64 = 1 << 9;
/// #PF error code bit 0: the page was present (a protection fault).
const PF_PRESENT: u64 = 1;
/// RFLAGS.RF, which the CPU sets in the frame of a fault.
const RFLAGS_RF: u64 = 1 << 16;

/// Called by `trap_common` for every trap with the interrupted context's saved registers.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    debug_assert_eq!(x86_64::registers::rflags::read_raw(), entry::KERNEL_RFLAGS, "the entry contract");
    let vector = frame.vector;
    if vector == NMI_VECTOR {
        // An NMI can arrive anywhere, even while the kernel's state is lent out (IF does not
        // mask it): it touches nothing but its own counter, and it is never a process's fault.
        NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let from_user = frame.came_from_user();
    if from_user && doors::testing() {
        doors::arrived(frame);
        return;
    }
    let now = rdtsc();
    // A system call, through whichever door: its accounting is done in one go by `syscall`.
    let arrival = match vector {
        SYSCALL_VECTOR => Some(Arrival::SyscallArchitectural),
        v if v == u64::from(INT80_VECTOR) && from_user => Some(Arrival::Int80Architectural),
        UD_VECTOR if from_user && doors::int80_recovered() && int80_at(frame.rip) => {
            // PVM (found by the doors self-test): `int 0x80` from ring 3 arrives as #UD at the
            // instruction. Complete it.
            frame.rip += 2;
            Some(Arrival::Int80Recovered)
        }
        PF_VECTOR if from_user && doors::syscall_recovered() && is_syscall_at_lstar(frame) => {
            // PVM (found by the doors self-test): `syscall` stays in ring 3 and faults fetching
            // LSTAR; RCX and R11 hold the return RIP and RFLAGS as `syscall` left them. Complete
            // it as the CPU would have. (A jump to LSTAR is not this: it is killed with its #PF.)
            if !(USER_BASE..USER_END).contains(&frame.rcx) {
                charge_user_time(now);
                count_trap(vector);
                kill(frame);
            }
            frame.rip = frame.rcx;
            frame.rflags = (frame.r11 & USER_RFLAGS_MASK) | RFLAGS_IF | 0x2;
            Some(Arrival::SyscallRecovered)
        }
        _ => None,
    };
    if let Some(arrival) = arrival {
        syscall::dispatch(frame, arrival, vector, now);
        return_to(frame);
        return;
    }
    if from_user {
        charge_user_time(now);
    }
    // An interrupt on a vector without a gate (idt.rs) counts as that vector.
    let stray = match vector {
        NP_VECTOR | GP_VECTOR => stray_interrupt(frame.error),
        _ => None,
    };
    let counted = stray.unwrap_or(vector);
    count_trap(counted);
    match vector {
        _ if stray.is_some() => unexpected_interrupt(counted, frame.rip),
        // A first touch of a BSS page (not present): map a zeroed frame and retry.
        PF_VECTOR
            if from_user && frame.error & PF_PRESENT == 0 && KERNEL.with(|k| exec::demand_zero(k, cpu::cr2())) => {}
        v if v == u64::from(TIMER_VECTOR) => timer(frame, now),
        v if v == u64::from(SERIAL_VECTOR) => serial_input(),
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        // A machine check is the hardware's failure, never the process's: the machine is not
        // to be trusted any more, in whichever ring it struck.
        MC_VECTOR => fatal(frame),
        v if v < 32 && from_user && fixed_up(frame) => {}
        v if v < 32 && from_user => kill(frame),
        v if v < 32 => fatal(frame),
        v => unexpected_interrupt(v, frame.rip),
    }
    return_to(frame);
}

/// Charges the TSC cycles since the running process last entered ring 3 to it.
fn charge_user_time(now: u64) {
    KERNEL.with(|k| {
        if let Some(slot) = k.procs.current() {
            k.charge_user_time(slot, now);
        }
    });
}

/// Counts a trap by its vector (system calls are counted with their call).
fn count_trap(vector: u64) {
    stats::update(|page| stats::count_trap(page, vector));
}

/// Prepares the way back: the exit instruction, and the time ring 3 is entered.
fn return_to(frame: &mut TrapFrame) {
    if frame.vector == SYSCALL_VECTOR && frame.rip >= USER_END {
        // sysretq to a non-user RIP would fault in ring 0; return with iretq instead.
        frame.vector = u64::from(INT80_VECTOR);
    }
    if frame.came_from_user() {
        let now = rdtsc();
        KERNEL.with(|k| k.user_entry_tsc = now);
    }
}

/// What a tick does to the running process.
enum Tick {
    Continue,
    /// Its slice is used up and another process is ready.
    Preempt,
    /// It ran longer than the runaway watchdog allows without a system call (`lde.runaway_ms`).
    Runaway,
}

/// A timer interrupt: a tick (charged to the running process, which is preempted when its
/// slice is used up and another is ready, or killed by the runaway watchdog), or in cooperative
/// mode a sleeper's wake-up.
fn timer(frame: &TrapFrame, now: u64) {
    time::on_tick(now);
    lapic::eoi();
    let runaway = time::runaway_ticks();
    let tick = KERNEL.with(|k| {
        sched::wake_due_sleepers(k, now);
        if time::mode() == TimerMode::None {
            return None;
        }
        let current = k.procs.current();
        let pid = current.map_or(0, |s| k.procs.get(s).pid);
        stats::update(|page| {
            page.ticks += 1;
            page.now_tsc = now;
            stats::event(page, now, EV_TICK, pid, 0);
        });
        Some(match current {
            Some(slot) if frame.came_from_user() => {
                let acct = &mut k.procs.get_mut(slot).acct;
                acct.ticks += 1;
                let hw = &mut k.hw[slot];
                hw.slice_left = hw.slice_left.saturating_sub(1);
                let left = hw.slice_left;
                if runaway != 0 && acct.ticks - hw.ticks_at_call >= runaway {
                    Tick::Runaway
                } else if left == 0 && k.procs.ready_count() > 0 {
                    Tick::Preempt
                } else {
                    Tick::Continue
                }
            }
            _ => Tick::Continue,
        })
    });
    let Some(tick) = tick else { return };
    let end = rdtsc();
    stats::update(|page| {
        page.tick_cycles += end - now;
        page.tick_count += 1;
    });
    match tick {
        Tick::Continue => {}
        // SAFETY: a tick from ring 3 runs on the process's kernel stack with interrupts off,
        // and no KERNEL borrow is alive.
        Tick::Preempt => unsafe { yield_current(false) },
        // SAFETY: as above.
        Tick::Runaway => unsafe { end_current(End::Killed { vector: TIMER_VECTOR, rip: frame.rip }) },
    }
}

/// NMIs taken (folded into the stats page's trap counts at the end of the run).
pub static NMIS: AtomicU64 = AtomicU64::new(0);

/// The vector of an external interrupt on a vector without a gate (idt.rs), if that is what a
/// #GP or #NP with this error code is. Not told by the error code's EXT bit, which neither PVM
/// nor QEMU sets (both as for `int n` from ring 3), but by the LAPIC: it put the vector in
/// service when it delivered the interrupt; `int n` puts nothing there. PVM gives
/// `vector * 8 + 2` as the SDM says; QEMU's TCG gives `vector * 16 + 2` for a gate of the wrong
/// type (docs/platform.md), so both readings are tried.
fn stray_interrupt(error: u64) -> Option<u64> {
    if error & ERROR_IDT == 0 {
        return None;
    }
    [error >> 3, error >> 4].into_iter().find(|v| (32..256).contains(v) && lapic::in_service(*v as u8))
}

/// An interrupt vector nothing was set up to raise (only devices can: ring 3 may raise only
/// the DPL-3 gates), delivered as a #GP or #NP (idt.rs), which is no fault of whatever it
/// interrupted. Acknowledged, so that it does not block lower-priority vectors in
/// the LAPIC, and reported once.
fn unexpected_interrupt(vector: u64, rip: u64) {
    lapic::eoi();
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        println!("kernel: unexpected interrupt {vector} at rip {rip:#x}, acknowledged (reported once)");
    }
}

/// The UART's interrupt: take its bytes and wake readers.
fn serial_input() {
    if input::drain_uart() {
        KERNEL.with(sched::wake_readers);
    }
    lapic::eoi();
}

const INT80_BYTES: [u8; 2] = [0xcd, INT80_VECTOR];

/// Whether a #UD from ring 3 at `rip` is an `int 0x80` (`CD 80`).
///
/// The bytes are read where they are, in the active address space: the CPU fetched the opcode
/// at `rip` to find it invalid, so that page is mapped for ring 3 (and the kernel does not use
/// SMAP); an `int` whose immediate lies on the next page was fetched whole too, or it would
/// have been a #PF. Only that page-crossing case, which a #UD from some other one-byte opcode
/// at a page's last byte could also present, walks the page tables for the second byte.
fn int80_at(rip: u64) -> bool {
    if !(USER_BASE..USER_END).contains(&rip) {
        return false;
    }
    // SAFETY: see above: the page holding `rip` is mapped user-readable and active.
    let first = unsafe { (rip as *const u8).read_volatile() };
    if first != INT80_BYTES[0] {
        return false;
    }
    if rip & 0xfff == 0xfff {
        return user_bytes_at(rip, INT80_BYTES);
    }
    // SAFETY: `rip + 1` lies on the same page as `rip`.
    unsafe { ((rip + 1) as *const u8).read_volatile() == INT80_BYTES[1] }
}

/// Whether the two bytes at user address `addr` of the running process are `bytes`.
fn user_bytes_at(addr: u64, bytes: [u8; 2]) -> bool {
    KERNEL.with(|k| {
        let Some(space) = k.procs.current().and_then(|slot| k.hw[slot].space.as_ref()) else {
            return false;
        };
        let byte = |addr: u64| {
            if !(USER_BASE..USER_END).contains(&addr) {
                return None;
            }
            space.translate(addr & !0xfff).map(|(frame, _)| {
                // SAFETY: the frame is mapped (identity) and belongs to the current process.
                unsafe { ((frame + (addr & 0xfff)) as *const u8).read() }
            })
        };
        byte(addr) == Some(bytes[0]) && addr.checked_add(1).and_then(byte) == Some(bytes[1])
    })
}

/// Whether a #PF from ring 3 is a `syscall` that stayed in ring 3 (PVM): it faulted fetching
/// LSTAR with RFLAGS as `syscall` leaves them, R11 masked by SFMASK. A jump to LSTAR cannot
/// look like that: SFMASK clears IF, and ring 3 (IOPL 0) can never run with IF clear.
fn is_syscall_at_lstar(frame: &TrapFrame) -> bool {
    let lstar = syscall_entry_address();
    frame.rip == lstar
        && cpu::cr2() == lstar
        && frame.rflags & RFLAGS_IF == 0
        && frame.rflags & !RFLAGS_RF == frame.r11 & !entry::SYSCALL_RFLAGS_MASK
}

/// Resumes the process at its fixup address if it armed one for this RIP.
fn fixed_up(frame: &mut TrapFrame) -> bool {
    KERNEL.with(|k| {
        let Some(slot) = k.procs.current() else { return false };
        match k.hw[slot].fixup {
            Some((fault, resume)) if fault == frame.rip => {
                frame.rip = resume;
                k.procs.get_mut(slot).acct.fixups += 1;
                true
            }
            _ => false,
        }
    })
}

/// Kills the running process for the trap in `frame`.
fn kill(frame: &TrapFrame) -> ! {
    KERNEL.with(|k| {
        if let Some(slot) = k.procs.current() {
            k.procs.get_mut(slot).acct.faults += 1;
        }
    });
    let end = End::Killed { vector: frame.vector as u8, rip: frame.rip };
    // SAFETY: a trap from ring 3 runs on the process's kernel stack with interrupts off, and no
    // KERNEL borrow is alive.
    unsafe { end_current(end) }
}

/// Every guard page (unmapped, below a kernel stack) with the name of its stack: the boot
/// stack, the IST stacks and one kernel stack per process slot.
pub fn guard_pages() -> [(&'static str, u64); 4 + MAX_PROCS] {
    let ist = gdt::ist_guards();
    core::array::from_fn(|i| match i {
        0 => ("boot stack", boot::boot_stack_guard()),
        1..=3 => ist[i - 1],
        _ => ("kernel stack of process slot", process::kstack_guard(i - 4)),
    })
}

/// A trap the kernel has no answer for: print everything and shut down.
fn fatal(frame: &TrapFrame) -> ! {
    let cr2 = cpu::cr2();
    if let Some((i, (name, _))) = guard_pages().iter().enumerate().find(|(_, (_, page))| cr2 & !0xfff == *page) {
        match i {
            0..=3 => println!("kernel: the {name} overflowed into its guard page"),
            _ => println!("kernel: the {name} {} overflowed into its guard page", i - 4),
        }
    }
    let ring = if frame.came_from_user() { 3 } else { 0 };
    println!(
        "kernel: fatal trap {} (vector {}) in ring {ring}, error {:#x}, rip {:#x}, cr2 {:#x}",
        mnemonic(frame.vector),
        frame.vector,
        frame.error,
        frame.rip,
        cr2,
    );
    dump(frame);
    cpu::shutdown(exit::KERNEL_PANIC)
}

/// Prints every saved register.
pub fn dump(f: &TrapFrame) {
    println!("  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}", f.rax, f.rbx, f.rcx, f.rdx);
    println!("  rsi {:016x} rdi {:016x} rbp {:016x} rsp {:016x}", f.rsi, f.rdi, f.rbp, f.rsp);
    println!("  r8  {:016x} r9  {:016x} r10 {:016x} r11 {:016x}", f.r8, f.r9, f.r10, f.r11);
    println!("  r12 {:016x} r13 {:016x} r14 {:016x} r15 {:016x}", f.r12, f.r13, f.r14, f.r15);
    println!("  rip {:016x} cs {:04x} rflags {:08x} ss {:04x}", f.rip, f.cs, f.rflags, f.ss);
}

/// Routes the UART's IRQ 4 through the I/O APIC to [`SERIAL_VECTOR`] and enables its
/// "data received" interrupt.
pub fn enable_serial_input() {
    crate::arch::ioapic::route(lde_abi::ports::SERIAL_IRQ, SERIAL_VECTOR);
    serial::enable_rx_interrupt();
}
