//! The kernel's test hooks (`lde.test=<name>` on the command line): deliberate crashes, hangs
//! and protection checks that the tests drive. Each prints one `kernel: test hook:` line first.

use core::sync::atomic::Ordering;

use lde_abi::user::USER_BASE;
use lde_abi::{cmdline as keys, exit};

use crate::arch::paging;
use crate::arch::{boot, cpu, idt, lapic};
use crate::process::KERNEL;
use crate::{exec, println, stats, trap};

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
            stats::update(|page| {
                page.ticks = keys::TORN_TICKS;
                cpu::shutdown(exit::KERNEL_PANIC)
            })
        }
        Some(other) => println!("kernel: unknown test hook {}={other}, ignored", keys::TEST_KEY),
    }
}

/// Runs the part of the hook the command line names that comes once every process has ended,
/// before the kernel reports and shuts down.
pub fn before_shutdown(hook: Option<&str>) {
    if hook == Some(keys::TEST_HOST_NMI) {
        // An NMI wakes the halt; the count is the NMI handler's, which lde cannot fake.
        while trap::NMIS.load(Ordering::Relaxed) < keys::HOST_NMI_COUNT {
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
