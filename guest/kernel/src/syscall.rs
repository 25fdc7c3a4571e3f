//! The system call table, reached through both doors. Every pointer, length and number a
//! process passes is checked; errors are negative errno values from `lde_abi::syscall`.

use lde_abi::stats::EV_SYSCALL;
use lde_abi::syscall::{
    self as nr, EAGAIN, EBADF, ECHILD, EFAULT, EINVAL, ENOENT, ENOEXEC, ENOMEM, ENOSYS, SLEEP_MAX_MS, WRITE_MAX,
};
use lde_abi::user::ARGS_BYTES_MAX;
use lde_kcore::args::Spec;
use lde_kcore::proc::{End, State, Wait};
use lde_kcore::usercopy::user_range;

use crate::arch::cpu::rdtsc;
use crate::arch::entry::TrapFrame;
use crate::counters::{self, Arrival};
use crate::exec::{self, SpawnError};
use crate::input::{self, Available};
use crate::process::KERNEL;
use crate::sched::{block_current, end_current, yield_current};
use crate::time;
use crate::usermem::user_pages_ok;
use crate::{console, disk};

/// Performs the call described by `frame` (number in rax, arguments in rdi, rsi, rdx, r10, r8,
/// r9) and puts the result in rax. `arrival` is the door it came through, `now` the TSC at entry:
/// the time since the process entered ring 3 is charged to it, and the trap, the door and the
/// call are counted, all in one pass over the kernel's state and its stats page.
///
/// Handlers that give up the CPU (`exit`, `yield`, a blocking `read`, `sleep_ms`, `wait`) may switch
/// because of where `dispatch` runs: `trap_dispatch` calls it only for a system call from ring
/// 3, so on the calling process's kernel stack (TSS.RSP0 and the `syscall` stack name it, set
/// by `sched::pick`), with IF clear (interrupt gates clear it, SFMASK clears it for `syscall`),
/// and outside every `with` (each handler's borrows end before it switches).
/// `sched::switch_to_scheduler` asserts the three in debug builds.
pub fn dispatch(frame: &mut TrapFrame, arrival: Arrival, now: u64) {
    let number = frame.rax;
    let pid = KERNEL.with(|k| {
        let slot = crate::process::current();
        k.charge_user_time(slot, now);
        let p = k.procs.get_mut(slot);
        p.watched_ticks = 0;
        let pid = p.pid;
        k.stats.update(|page| {
            counters::count_arrival(page, arrival);
            if number < nr::COUNT {
                page.calls[number as usize] += 1;
                page.procs[slot].syscalls[number as usize] += 1;
            }
            counters::event(page, now, EV_SYSCALL, pid, number.min(u64::from(u32::MAX)) as u32);
        });
        pid
    });
    let result: i64 = match number {
        nr::NULL => 0,
        nr::WRITE => write(frame.rdi, frame.rsi, frame.rdx),
        nr::EXIT => {
            if frame.rdi > 255 {
                -EINVAL
            } else {
                // SAFETY: a system call (see above); the `with` that counted it has returned.
                unsafe { end_current(End::Exited(frame.rdi as u8)) }
            }
        }
        nr::GETPID => i64::from(pid),
        nr::YIELD => {
            // SAFETY: a system call (see above); the `with` that counted it has returned.
            unsafe { yield_current(true, rdtsc()) };
            0
        }
        nr::SLEEP_MS => sleep_ms(frame.rdi),
        nr::READ => read(frame.rdi, frame.rsi, frame.rdx),
        nr::UPTIME_MS => time::uptime_ms() as i64,
        nr::SPAWN => spawn(frame.rdi, frame.rsi, pid),
        nr::FIXUP => fixup(frame.rdi, frame.rsi),
        nr::WAIT => wait(),
        nr::DISK_INFO => disk::info(frame.rdi),
        nr::DISK_READ => disk::transfer(frame.rdi, frame.rsi, frame.rdx, frame.r10, false),
        nr::DISK_WRITE => disk::transfer(frame.rdi, frame.rsi, frame.rdx, frame.r10, true),
        _ => -ENOSYS,
    };
    frame.rax = result as u64;
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
    console::write(bytes);
    console::flush();
    len as i64
}

/// `read(fd, buf, len)`: fd 0 is serial input; blocks until a byte or the end of input.
fn read(fd: u64, ptr: u64, len: u64) -> i64 {
    if fd != 0 {
        return -EBADF;
    }
    let len = len.min(WRITE_MAX);
    if let Err(e) = user_pages_ok(ptr, len, true) {
        return e;
    }
    if len == 0 {
        return 0;
    }
    loop {
        // SAFETY: the range is mapped user-writable in the current address space (checked; the
        // process's own address space is active whenever it runs), and no SMAP.
        let out = unsafe { core::slice::from_raw_parts_mut(ptr as *mut u8, len as usize) };
        match input::take(out) {
            Available::Bytes(n) => return n as i64,
            Available::End => return 0,
            // SAFETY: a system call (see `dispatch`); `input::take` has returned its borrow.
            Available::Nothing => unsafe { block_current(State::Reading) },
        }
    }
}

/// `sleep_ms(ms)`: blocks until at least `ms` milliseconds have passed.
fn sleep_ms(ms: u64) -> i64 {
    if ms > SLEEP_MAX_MS {
        return -EINVAL;
    }
    let until = rdtsc() + time::ms_to_tsc(ms);
    while rdtsc() < until {
        // SAFETY: a system call (see `dispatch`), holding no borrow here.
        unsafe { block_current(State::Sleeping { until }) };
    }
    0
}

/// `wait()`: blocks until a child ends; returns its pid, or `-ECHILD` if none is left to report.
fn wait() -> i64 {
    loop {
        match KERNEL.with(|k| k.procs.wait_for(crate::process::current())) {
            Wait::Ended(pid) => return i64::from(pid),
            Wait::NoChild => return -ECHILD,
            // SAFETY: a system call (see `dispatch`); the `with` above has returned.
            Wait::Block => unsafe { block_current(State::Waiting) },
        }
    }
}

/// `spawn(spec, len)`: starts a program; returns its pid.
fn spawn(ptr: u64, len: u64, parent: u32) -> i64 {
    if len > ARGS_BYTES_MAX as u64 {
        return -EINVAL;
    }
    if let Err(e) = user_pages_ok(ptr, len, false) {
        return e;
    }
    let mut text = [0u8; ARGS_BYTES_MAX];
    // SAFETY: the range is mapped user-readable (checked) and at most ARGS_BYTES_MAX long.
    let src = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    text[..src.len()].copy_from_slice(src);
    let spec = match Spec::from_text(&text[..src.len()]) {
        Ok(spec) => spec,
        Err(_) => return -EINVAL,
    };
    match KERNEL.with(|k| exec::spawn(k, &spec, parent)) {
        Ok(pid) => i64::from(pid),
        Err(SpawnError::NotFound) => -ENOENT,
        Err(SpawnError::Elf(_)) => -ENOEXEC,
        Err(SpawnError::Args(_)) => -EINVAL,
        Err(SpawnError::TooManyProcesses) => -EAGAIN,
        Err(SpawnError::OutOfMemory) => -ENOMEM,
    }
}

/// `fixup(fault_rip, resume_rip)`: arms (or, with zeros, clears) the caller's exception fixup.
fn fixup(fault_rip: u64, resume_rip: u64) -> i64 {
    let armed = match (fault_rip, resume_rip) {
        (0, 0) => None,
        (f, r) if user_range(f, 1).is_ok() && user_range(r, 1).is_ok() => Some((f, r)),
        _ => return -EFAULT,
    };
    KERNEL.with(|k| {
        let Some(slot) = crate::arch::percpu::current() else { return -EFAULT };
        let p = k.procs.get_mut(slot);
        p.fixup = armed;
        p.acct.fixups as i64
    })
}
