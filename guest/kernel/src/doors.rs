//! The two system-call doors on this host. The self-test: at boot, before any program runs, the kernel executes `syscall` and
//! `int 0x80` from a page of its own in ring 3 and records how each arrived. Only a host seen to
//! deliver a door the PVM way (`syscall` as a #PF at LSTAR in ring 3, `int 0x80` as a #UD at
//! the instruction) gets that path served later; everywhere else those traps are what the
//! architecture says they are (a process that jumps to LSTAR is killed with its #PF). Nothing
//! the test does is counted in the stats page. Where it found the PVM way, `trap.rs` asks
//! [`int80_at`] and [`is_syscall_at_lstar`] whether a #UD or #PF is a door, and
//! [`complete_syscall`] finishes a `syscall` the CPU left in ring 3.
//!
//! The excursion runs on slot 0's kernel stack (no process exists yet): the boot code switches
//! to a TrapFrame that `iretq`s to the test page; the first trap advances it to the
//! `int 0x80`; the second switches back to the boot code and abandons that stack.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use lde_abi::stats::{DOOR_ARCHITECTURAL, DOOR_OTHER, DOOR_RECOVERED};
use lde_abi::user::{USER_BASE, USER_END};

use crate::arch::entry::{CommonPath, TrapFrame};
use crate::arch::gdt::{USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use crate::arch::paging;
use crate::arch::switch::{new_process_stack, switch};
use crate::arch::syscall_entry::syscall_entry_address;
use crate::arch::vectors::{INT80_VECTOR, NMI_VECTOR, PF_VECTOR, SYSCALL_VECTOR, UD_VECTOR};
use crate::arch::{cpu, entry, syscall_entry};
use crate::arch::{idt, percpu};
use crate::exec;
use crate::process::KERNEL;
use crate::stacks::kstack_top;

/// The test page: `syscall; int $0x80; ud2` (the `ud2` is never reached).
const TEST_CODE: [u8; 6] = [0x0f, 0x05, 0xcd, 0x80, 0x0f, 0x0b];
const SYSCALL_AT: u64 = USER_BASE;
const INT80_AT: u64 = USER_BASE + 2;

/// RFLAGS bits `sysretq` takes from R11, the ones a process may set: CF PF AF ZF SF TF DF OF
/// NT AC ID (never IOPL, RF, VM).
const USER_RFLAGS_MASK: u64 = 0x24_4dd5;
const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.RF, which the CPU sets in the frame of a fault.
const RFLAGS_RF: u64 = 1 << 16;

/// What the self-test found, in `StatsPage::doors`'s encoding (`DOOR_*` codes: `syscall` in
/// bits 0-7, `int 0x80` in bits 8-15, the vector of a `DOOR_OTHER` arrival in bits 16-23 and
/// 24-31). 0 until the test has run.
static DOORS: AtomicU32 = AtomicU32::new(0);
/// The test's step while it runs: 0 not running, 1 waiting for `syscall`, 2 for `int 0x80`.
static STEP: AtomicU8 = AtomicU8::new(0);
/// The boot code's RSP while the test page runs.
static BOOT_RSP: AtomicU64 = AtomicU64::new(0);

/// Records how one door arrived: `shift` 0 for `syscall`, 8 for `int 0x80`.
fn record(shift: u32, code: u32, vector: u64) {
    let other = if code == DOOR_OTHER { (vector as u32 & 0xff) << (16 + shift) } else { 0 };
    DOORS.fetch_or((code << shift) | other, Ordering::Relaxed);
}

/// The self-test's results as the stats page holds them (`StatsPage::doors`).
pub fn encoded() -> u32 {
    DOORS.load(Ordering::Relaxed)
}

/// Whether `syscall` from ring 3 must be completed from its #PF at LSTAR on this host.
pub fn syscall_recovered() -> bool {
    encoded() & 0xff == DOOR_RECOVERED
}

/// Whether `int 0x80` from ring 3 must be completed from its #UD on this host.
pub fn int80_recovered() -> bool {
    (encoded() >> 8) & 0xff == DOOR_RECOVERED
}

/// Runs the self-test. Call once at boot, after `syscall_entry::init_syscall`, before any process
/// exists, with interrupts off. Returns false if memory for the test page ran out (nothing is
/// then tested and both doors are served architecturally only).
pub fn self_test() -> bool {
    let Ok(space) = KERNEL.with(|k| exec::code_page(k, &TEST_CODE)) else {
        return false;
    };
    space.activate();
    let top = kstack_top(0);
    // SAFETY: no process exists, so slot 0's stack is unused; interrupts are off.
    unsafe { percpu::this().set_kernel_stack(top) };
    let frame_addr = top - core::mem::size_of::<TrapFrame>() as u64;
    let frame = TrapFrame {
        rip: SYSCALL_AT,
        cs: u64::from(USER_CODE_SELECTOR),
        rflags: entry::KERNEL_RFLAGS, // IF off: nothing but the test's own traps can arrive
        ss: u64::from(USER_DATA_SELECTOR),
        ..TrapFrame::default()
    };
    STEP.store(1, Ordering::Relaxed);
    // SAFETY: interrupts are off, no other processor runs, and only the test's own traps can
    // arrive while its page runs: every one goes to `doors_arrived`. The frame lies at the top
    // of slot 0's unused kernel stack; `doors_arrived` switches back to BOOT_RSP after the second
    // trap. No KERNEL borrow is alive.
    unsafe {
        entry::use_common_path(CommonPath::Doors);
        (frame_addr as *mut TrapFrame).write(frame);
        let rsp = new_process_stack(frame_addr);
        switch(BOOT_RSP.as_ptr(), rsp);
        entry::use_common_path(CommonPath::Single);
    }
    paging::activate_kernel();
    KERNEL.with(|k| space.destroy(&mut k.frames));
    // SAFETY: interrupts are off and no other processor runs yet.
    unsafe { idt::use_recovered_doors(syscall_recovered(), int80_recovered()) };
    true
}

/// Every trap while the self-test runs comes here instead of `trap_dispatch` (entry.rs's
/// `trap_common_doors`, so that a process's trap pays no test for the self-test): records how
/// the door arrived, then goes on to the next door or back to the boot code.
#[no_mangle]
extern "C" fn doors_arrived(frame: &mut TrapFrame, from_user: bool) {
    let v = frame.vector;
    if v == NMI_VECTOR {
        // An NMI is no door (it may strike while the test page runs): counted, as anywhere.
        crate::counters::NMIS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !from_user {
        crate::fatal::fatal(frame);
    }
    let lstar = syscall_entry_address();
    if STEP.load(Ordering::Relaxed) == 1 {
        let code = match v {
            SYSCALL_VECTOR => DOOR_ARCHITECTURAL,
            PF_VECTOR if frame.rip == lstar && cpu::cr2() == lstar && frame.rcx == INT80_AT => DOOR_RECOVERED,
            _ => DOOR_OTHER,
        };
        record(0, code, v);
        STEP.store(2, Ordering::Relaxed);
        *frame = TrapFrame {
            rip: INT80_AT,
            cs: u64::from(USER_CODE_SELECTOR),
            rflags: entry::KERNEL_RFLAGS,
            ss: u64::from(USER_DATA_SELECTOR),
            vector: u64::from(INT80_VECTOR), // the `int 0x80` door's frame
            ..TrapFrame::default()
        };
        return;
    }
    let code = match v {
        v if v == u64::from(INT80_VECTOR) => DOOR_ARCHITECTURAL,
        UD_VECTOR if frame.rip == INT80_AT => DOOR_RECOVERED,
        _ => DOOR_OTHER,
    };
    record(8, code, v);
    STEP.store(0, Ordering::Relaxed);
    let mut abandoned = 0;
    // SAFETY: BOOT_RSP was saved by `self_test`'s switch and its stack (the boot stack) is
    // live; this stack is never resumed. Interrupts are off.
    unsafe { switch(&mut abandoned, BOOT_RSP.load(Ordering::Relaxed)) };
    unreachable!("the doors self-test's stack was resumed");
}

const INT80_BYTES: [u8; 2] = [0xcd, INT80_VECTOR];

/// Whether a #UD from ring 3 at `rip` is an `int 0x80` (`CD 80`).
///
/// The bytes are read where they are, in the active address space: the CPU fetched the opcode
/// at `rip` to find it invalid, so that page is mapped for ring 3 (and the kernel does not use
/// SMAP); an `int` whose immediate lies on the next page was fetched whole too, or it would
/// have been a #PF. Only that page-crossing case, which a #UD from some other one-byte opcode
/// at a page's last byte could also present, walks the page tables for the second byte.
pub fn int80_at(rip: u64) -> bool {
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
        let Some(space) = percpu::current().and_then(|slot| k.procs.get(slot).machine.space.as_ref()) else {
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
pub fn is_syscall_at_lstar(frame: &TrapFrame) -> bool {
    let lstar = syscall_entry_address();
    frame.rip == lstar
        && cpu::cr2() == lstar
        && frame.rflags & RFLAGS_IF == 0
        && frame.rflags & !RFLAGS_RF == frame.r11 & !syscall_entry::SYSCALL_RFLAGS_MASK
}

/// Completes a `syscall` that [`is_syscall_at_lstar`] recognised as the CPU would have: RCX
/// and R11 hold the return RIP and RFLAGS as `syscall` left them. False (the frame untouched)
/// if the return RIP is outside user space: the process is then killed with its #PF.
pub fn complete_syscall(frame: &mut TrapFrame) -> bool {
    if !(USER_BASE..USER_END).contains(&frame.rcx) {
        return false;
    }
    frame.rip = frame.rcx;
    frame.rflags = (frame.r11 & USER_RFLAGS_MASK) | RFLAGS_IF | 0x2;
    true
}
