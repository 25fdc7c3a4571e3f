//! The system call table, reached through both doors. Every pointer, length and number a
//! process passes is checked; errors are negative errno values from `lde_abi::syscall`.

use lde_abi::syscall::{self as nr, EBADF, EFAULT, EINVAL, ENOSYS, WRITE_MAX};
use lde_kcore::proc::End;
use lde_kcore::usercopy::user_range;

use crate::arch::serial;
use crate::arch::trap::TrapFrame;
use crate::process::{end_current, switch_to_scheduler, KERNEL};
use crate::stats::Arrival;

/// Performs the call described by `frame` (number in rax, arguments in rdi, rsi, rdx, r10, r8,
/// r9) and puts the result in rax.
pub fn dispatch(frame: &mut TrapFrame, arrival: Arrival) {
    let number = frame.rax;
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    // SAFETY: interrupts off; the reference ends before any switch below.
    let (slot, pid) = unsafe {
        let k = KERNEL.get();
        k.stats.count_arrival(arrival);
        let slot = k.procs.current().expect("system calls come from a running process");
        if number < nr::COUNT {
            k.stats.calls[number as usize] += 1;
            k.procs.get_mut(slot).acct.syscalls[number as usize] += 1;
        }
        (slot, k.procs.get(slot).pid)
    };
    let result: i64 = match number {
        nr::NULL => 0,
        nr::WRITE => write(args[0], args[1], args[2]),
        nr::EXIT => {
            if args[0] > 255 {
                -EINVAL
            } else {
                // SAFETY: on the process's kernel stack, interrupts off, no KERNEL reference.
                unsafe { end_current(End::Exited(args[0] as u8)) }
            }
        }
        nr::GETPID => i64::from(pid),
        nr::YIELD => {
            // SAFETY: interrupts off; the reference ends before the switch.
            unsafe { KERNEL.get().procs.preempt_current(true) };
            // SAFETY: on the process's kernel stack, interrupts off, no KERNEL reference.
            unsafe { switch_to_scheduler(slot) };
            0
        }
        _ => -ENOSYS,
    };
    frame.rax = result as u64;
}

/// Whether every page of `[ptr, ptr + len)` is mapped for ring 3 (and writable if `write`).
fn user_pages_ok(ptr: u64, len: u64, write: bool) -> Result<(), i64> {
    let (first, end) = user_range(ptr, len)?;
    // SAFETY: interrupts off; a short-lived reference.
    let k = unsafe { KERNEL.get() };
    let slot = k.procs.current().ok_or(-EFAULT)?;
    let space = k.hw[slot].space.as_ref().ok_or(-EFAULT)?;
    let mut page = first;
    while page < end {
        match space.translate(page) {
            Some((_, flags)) if flags.writable || !write => {}
            _ => return Err(-EFAULT),
        }
        page += 4096;
    }
    Ok(())
}

/// `write(fd, buf, len)`: fd 1 and 2 are the serial console.
fn write(fd: u64, ptr: u64, len: u64) -> i64 {
    if fd != 1 && fd != 2 {
        return -EBADF;
    }
    let len = len.min(WRITE_MAX);
    if let Err(e) = user_pages_ok(ptr, len, false) {
        return e;
    }
    // SAFETY: every page of the range is mapped user-readable in the current address space,
    // which is active, and the kernel does not use SMAP.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    serial::write_bytes(bytes);
    len as i64
}
