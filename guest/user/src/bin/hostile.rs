//! Enters the kernel with a hostile RFLAGS bit set: `hostile FLAG ENTRY`, FLAG df|ac|tf|nt, ENTRY none|syscall|int80|fault|timer.
//!
//! `hostile unfinished` leaves its last line unfinished (the kernel's `exit` line must still
//! start a line of its own).
//!
//! The flag is set with `popfq` right before the entry and cleared right after, in asm, so no
//! Rust code of this program runs with it. `syscall` and `int80` spawn `hello` through that
//! door (the kernel copies the program spec: a backwards copy under DF=1 would wreck its
//! stack) and then check that the flag came back as it was set; `fault` executes `ud2` (the
//! process is killed, the kernel carries on); `timer` spins for 50 ms so that timer ticks and
//! preemption arrive with the flag set. With TF the program expects to be killed by #DB.
#![no_std]
#![no_main]

use core::arch::asm;

use lde_user::{nr, println, Args, Door};

const DF: u64 = 1 << 10;
const AC: u64 = 1 << 18;
const TF: u64 = 1 << 8;
const NT: u64 = 1 << 14;

const SPEC: &[u8] = b"hello";

/// `spawn("hello")` through `door` with `flag` set in RFLAGS; returns (result, RFLAGS seen right
/// after the call).
fn spawn_via(door: Door, flag: u64) -> (i64, u64) {
    door.call_with_rflags(flag, nr::SPAWN, [SPEC.as_ptr() as u64, SPEC.len() as u64, 0, 0, 0, 0])
}

/// Sets `flag` and reads RFLAGS back without entering the kernel: whether ring 3 can set it
/// at all on this host (the control for the doors).
fn set_only(flag: u64) -> (i64, u64) {
    let after: u64;
    // SAFETY: sets `flag`, reads RFLAGS back and clears the flag again before any compiled code
    // runs; the pushes and pops balance.
    unsafe {
        asm!(
            "pushfq", "or qword ptr [rsp], {flag}", "popfq",
            "pushfq", "pop {after}",
            "push {after}", "and qword ptr [rsp], {keep}", "popfq",
            flag = in(reg) flag,
            keep = in(reg) !flag,
            after = out(reg) after,
        );
    }
    (1, after)
}

/// Executes `ud2` with `flag` set: the kernel kills the process.
fn fault(flag: u64) -> ! {
    // SAFETY: raises #UD; the process never continues.
    unsafe { asm!("pushfq", "or qword ptr [rsp], {flag}", "popfq", "ud2", flag = in(reg) flag, options(noreturn)) }
}

/// Spins for `cycles` TSC cycles with `flag` set (register-only code: DF and AC change nothing
/// in it), so that timer interrupts arrive while it is set.
fn spin(flag: u64, cycles: u64) {
    // SAFETY: reads the TSC in a loop; the flag is cleared before the block ends and the
    // pushes and pops are balanced.
    unsafe {
        asm!(
            "pushfq", "or qword ptr [rsp], {flag}", "popfq",
            "rdtsc", "shl rdx, 32", "or rax, rdx", "add {end}, rax",
            "2:", "rdtsc", "shl rdx, 32", "or rax, rdx", "cmp rax, {end}", "jb 2b",
            "pushfq", "and qword ptr [rsp], {keep}", "popfq",
            flag = in(reg) flag,
            keep = in(reg) !flag,
            end = inout(reg) cycles => _,
            out("rax") _, out("rdx") _,
        );
    }
}

fn main(args: Args) -> i32 {
    if args.get(1) == Some("unfinished") {
        // Leaves a line unfinished and forges a kernel line: the kernel's real `exit` line
        // must still start a line of its own.
        lde_user::print!("hostile: no newline here, exit pid=1 name=hostile status=7");
        return 0;
    }
    let (Some(flag_name), Some(entry)) = (args.get(1), args.get(2)) else {
        println!("usage: hostile df|ac|tf|nt none|syscall|int80|fault|timer");
        return 2;
    };
    let flag = match flag_name {
        "df" => DF,
        "ac" => AC,
        "tf" => TF,
        "nt" => NT,
        _ => {
            println!("hostile: unknown flag {flag_name}");
            return 2;
        }
    };
    let (ret, after) = match entry {
        "none" => set_only(flag),
        "syscall" => spawn_via(Door::Syscall, flag),
        "int80" => spawn_via(Door::Int80, flag),
        "fault" => fault(flag),
        "timer" => {
            spin(flag, lde_user::tsc_hz() / 20);
            println!("hostile: {flag_name} timer: survived 50 ms of ticks");
            return 0;
        }
        _ => {
            println!("hostile: unknown entry {entry}");
            return 2;
        }
    };
    let kept = if after & flag != 0 { "kept" } else { "lost" };
    println!("hostile: {flag_name} {entry}: spawn returned {ret}, {flag_name} {kept}");
    i32::from(ret <= 0 || after & flag == 0)
}

lde_user::entry!(main);
