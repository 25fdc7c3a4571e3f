//! The doors self-test: at boot, before any program runs, the kernel executes `syscall` and
//! `int 0x80` from a page of its own in ring 3 and records how each arrived. Only a host seen to
//! deliver a door the PVM way (`syscall` as a #PF at LSTAR in ring 3, `int 0x80` as a #UD at
//! the instruction) gets that path served later; everywhere else those traps are what the
//! architecture says they are (a process that jumps to LSTAR is killed with its #PF). Nothing
//! the test does is counted in the stats page.
//!
//! The excursion runs on slot 0's kernel stack (no process exists yet): the boot code switches
//! to a TrapFrame that `iretq`s to the test page; the first trap advances it to the
//! `int 0x80`; the second switches back to the boot code and abandons that stack.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use lde_abi::stats::{DOOR_ARCHITECTURAL, DOOR_OTHER, DOOR_RECOVERED, DOOR_UNTESTED};
use lde_abi::syscall::INT80_VECTOR;
use lde_abi::user::USER_BASE;

use crate::arch::entry::{syscall_entry_address, TrapFrame, SYSCALL_VECTOR};
use crate::arch::gdt::{self, USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use crate::arch::paging::{self, AddressSpace, PageFlags};
use crate::arch::switch::{new_process_stack, switch};
use crate::arch::{cpu, entry};
use crate::process::{kstack_top, KERNEL};
use crate::trap::{PF_VECTOR, UD_VECTOR};

/// The test page: `syscall; int $0x80; ud2` (the `ud2` is never reached).
const TEST_CODE: [u8; 6] = [0x0f, 0x05, 0xcd, 0x80, 0x0f, 0x0b];
const SYSCALL_AT: u64 = USER_BASE;
const INT80_AT: u64 = USER_BASE + 2;

/// How one door arrived in the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Not tested (yet).
    Untested,
    /// As the manuals say.
    Architectural,
    /// The PVM way; the kernel completes such calls.
    Recovered,
    /// As another trap (its vector): the door does not work on this host.
    Other(u8),
}

/// The results of the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doors {
    pub syscall: Arrival,
    pub int80: Arrival,
}

// Encoding of an `Arrival` in a byte: 0 untested, 1 architectural, 2 recovered, 0x100 + v is
// not representable, so other vectors are stored as 3 and the vector in OTHER_VECTOR.
static SYSCALL: AtomicU8 = AtomicU8::new(0);
static INT80: AtomicU8 = AtomicU8::new(0);
static SYSCALL_OTHER: AtomicU8 = AtomicU8::new(0);
static INT80_OTHER: AtomicU8 = AtomicU8::new(0);
/// The test's step while it runs: 0 not running, 1 waiting for `syscall`, 2 for `int 0x80`.
static STEP: AtomicU8 = AtomicU8::new(0);
/// The boot code's RSP while the test page runs.
static BOOT_RSP: AtomicU64 = AtomicU64::new(0);

fn encode(a: Arrival, other: &AtomicU8) -> u8 {
    match a {
        Arrival::Untested => 0,
        Arrival::Architectural => 1,
        Arrival::Recovered => 2,
        Arrival::Other(v) => {
            other.store(v, Ordering::Relaxed);
            3
        }
    }
}

fn decode(b: u8, other: &AtomicU8) -> Arrival {
    match b {
        1 => Arrival::Architectural,
        2 => Arrival::Recovered,
        3 => Arrival::Other(other.load(Ordering::Relaxed)),
        _ => Arrival::Untested,
    }
}

/// What the self-test found.
pub fn doors() -> Doors {
    Doors {
        syscall: decode(SYSCALL.load(Ordering::Relaxed), &SYSCALL_OTHER),
        int80: decode(INT80.load(Ordering::Relaxed), &INT80_OTHER),
    }
}

/// The self-test's results as the stats page holds them (`StatsPage::doors`).
pub fn encoded() -> u32 {
    let code = |a: Arrival| match a {
        Arrival::Untested => (DOOR_UNTESTED, 0),
        Arrival::Architectural => (DOOR_ARCHITECTURAL, 0),
        Arrival::Recovered => (DOOR_RECOVERED, 0),
        Arrival::Other(v) => (DOOR_OTHER, u32::from(v)),
    };
    let d = doors();
    let (s, sv) = code(d.syscall);
    let (i, iv) = code(d.int80);
    s | i << 8 | sv << 16 | iv << 24
}

/// Whether `syscall` from ring 3 must be completed from its #PF at LSTAR on this host.
pub fn syscall_recovered() -> bool {
    SYSCALL.load(Ordering::Relaxed) == 2
}

/// Whether `int 0x80` from ring 3 must be completed from its #UD on this host.
pub fn int80_recovered() -> bool {
    INT80.load(Ordering::Relaxed) == 2
}

/// Whether the self-test is running (its traps are not a process's).
pub fn testing() -> bool {
    STEP.load(Ordering::Relaxed) != 0
}

/// Runs the self-test. Call once at boot, after `entry::init_syscall`, before any process
/// exists, with interrupts off. Returns false if memory for the test page ran out (nothing is
/// then tested and both doors are served architecturally only).
pub fn self_test() -> bool {
    let Some(space) = KERNEL.with(|k| {
        let frame = k.frames.alloc_zeroed()?;
        // SAFETY: a fresh identity-mapped frame; the code is far smaller than a page.
        unsafe { core::ptr::copy_nonoverlapping(TEST_CODE.as_ptr(), frame as *mut u8, TEST_CODE.len()) };
        let mut space = AddressSpace::new(&mut k.frames).ok()?;
        let flags = PageFlags { writable: false, executable: true };
        match space.map(&mut k.frames, USER_BASE, frame, flags) {
            Ok(()) => Some(space),
            Err(_) => {
                k.frames.free(frame);
                space.destroy(&mut k.frames);
                None
            }
        }
    }) else {
        return false;
    };
    space.activate();
    let top = kstack_top(0);
    // SAFETY: no process exists, so slot 0's stack is unused; interrupts are off.
    unsafe { gdt::set_kernel_stack(x86_64::VirtAddr::new(top)) };
    entry::set_syscall_stack(top);
    let frame_addr = top - core::mem::size_of::<TrapFrame>() as u64;
    let frame = TrapFrame {
        rip: SYSCALL_AT,
        cs: u64::from(USER_CODE_SELECTOR),
        rflags: entry::KERNEL_RFLAGS, // IF off: nothing but the test's own traps can arrive
        ss: u64::from(USER_DATA_SELECTOR),
        ..TrapFrame::default()
    };
    STEP.store(1, Ordering::Relaxed);
    // SAFETY: the frame lies at the top of slot 0's unused kernel stack; `arrived` switches
    // back to BOOT_RSP after the second trap. No KERNEL borrow is alive.
    unsafe {
        (frame_addr as *mut TrapFrame).write(frame);
        let rsp = new_process_stack(frame_addr);
        switch(BOOT_RSP.as_ptr(), rsp);
    }
    paging::activate_kernel();
    KERNEL.with(|k| space.destroy(&mut k.frames));
    true
}

/// Called by `trap_dispatch` for a trap from ring 3 while the self-test runs: records how the
/// door arrived, then goes on to the next door or back to the boot code.
pub fn arrived(frame: &mut TrapFrame) {
    let v = frame.vector;
    let lstar = syscall_entry_address();
    let other = |v: u64| Arrival::Other(v as u8);
    if STEP.load(Ordering::Relaxed) == 1 {
        let a = match v {
            SYSCALL_VECTOR => Arrival::Architectural,
            PF_VECTOR if frame.rip == lstar && cpu::cr2() == lstar && frame.rcx == INT80_AT => Arrival::Recovered,
            v => other(v),
        };
        SYSCALL.store(encode(a, &SYSCALL_OTHER), Ordering::Relaxed);
        STEP.store(2, Ordering::Relaxed);
        *frame = TrapFrame {
            rip: INT80_AT,
            cs: u64::from(USER_CODE_SELECTOR),
            rflags: entry::KERNEL_RFLAGS,
            ss: u64::from(USER_DATA_SELECTOR),
            vector: u64::from(INT80_VECTOR), // leave with iretq
            ..TrapFrame::default()
        };
        return;
    }
    let a = match v {
        v if v == u64::from(INT80_VECTOR) => Arrival::Architectural,
        UD_VECTOR if frame.rip == INT80_AT => Arrival::Recovered,
        v => other(v),
    };
    INT80.store(encode(a, &INT80_OTHER), Ordering::Relaxed);
    STEP.store(0, Ordering::Relaxed);
    let mut abandoned = 0;
    // SAFETY: BOOT_RSP was saved by `self_test`'s switch and its stack (the boot stack) is
    // live; this stack is never resumed. Interrupts are off.
    unsafe { switch(&mut abandoned, BOOT_RSP.load(Ordering::Relaxed)) };
    unreachable!("the doors self-test's stack was resumed");
}
