//! The tiny runtime of lde user programs: the `_start` entry (System V start frame and
//! auxiliary vector), system call wrappers for both doors (`syscall` and `int 0x80`),
//! `print!`/`println!`, and `exit`.
//!
//! A program is a `src/bin/*.rs` file whose first `//!` line describes it (`lde run --list`
//! shows that line), with `fn main(args: Args) -> i32` and `lde_user::entry!(main);`.
#![no_std]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};

pub use lde_abi::syscall as nr;

// Entry contract (System V x86-64 process start): RSP points at argc, followed by the argv
// pointers, a NULL, an empty envp (NULL) and auxv (AT_NULL). `_start` passes that pointer to
// `lde_start` with a 16-byte aligned stack and a zero frame pointer.
global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    xorl %ebp, %ebp
    movq %rsp, %rdi
    andq $-16, %rsp
    call lde_start
    ud2
    "#,
    options(att_syntax)
);

extern "Rust" {
    /// Defined by [`entry!`] in each program.
    fn lde_user_main(args: Args) -> i32;
}

#[no_mangle]
extern "C" fn lde_start(sp: *const u64) -> ! {
    // .bss needs no clearing: the kernel loads every byte past a segment's file bytes as zero
    // (mapping those pages only when they are first touched).
    // SAFETY: the kernel built a System V start frame at `sp`: argc, then argc pointers to
    // NUL-terminated strings.
    let args = unsafe { Args { argc: *sp as usize, argv: sp.add(1) as *const *const u8 } };
    // SAFETY: after argv come its NULL, an empty envp (NULL), then auxv pairs up to AT_NULL.
    unsafe {
        let mut aux = sp.add(1 + args.argc + 2);
        while *aux != lde_abi::user::AT_NULL {
            if *aux == lde_abi::user::AT_LDE_TSC_HZ {
                TSC_HZ.store(*aux.add(1), core::sync::atomic::Ordering::Relaxed);
            }
            aux = aux.add(2);
        }
    }
    // SAFETY: every program defines lde_user_main through `entry!`.
    let status = unsafe { lde_user_main(args) };
    exit(status)
}

/// Declares the program's `main(args: Args) -> i32`; its result is the exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn lde_user_main(args: $crate::Args) -> i32 {
            $main(args)
        }
    };
}

/// The program's arguments (argv[0] is its name).
#[derive(Clone, Copy)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

impl Args {
    /// Number of arguments, the program name included.
    pub fn len(&self) -> usize {
        self.argc
    }

    /// Whether there are no arguments at all (the kernel always passes the name).
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i` (0 = the program name), if present and UTF-8.
    pub fn get(&self, i: usize) -> Option<&'static str> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: the kernel wrote argc valid pointers to NUL-terminated strings, which live
        // on the stack for the whole run.
        unsafe {
            let p = *self.argv.add(i);
            let mut len = 0;
            while *p.add(len) != 0 {
                len += 1;
            }
            core::str::from_utf8(core::slice::from_raw_parts(p, len)).ok()
        }
    }

    /// Argument `i` as a number, or `default` when it is missing; `None` if it is not a number.
    pub fn number(&self, i: usize, default: u64) -> Option<u64> {
        match self.get(i) {
            None => Some(default),
            Some(s) => s.parse().ok(),
        }
    }
}

/// Which instruction enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `syscall` (returns with `sysretq` where the host delivers it architecturally).
    Syscall,
    /// `int 0x80` through a DPL-3 interrupt gate (returns with `iretq`).
    Int80,
}

impl Door {
    /// Makes system call `number` with six arguments through this door.
    pub fn call(self, number: u64, args: [u64; 6]) -> i64 {
        let ret: i64;
        match self {
            // SAFETY: the system call ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8,
            // r9; the kernel returns in rax and, as `syscall` does, leaves rcx and r11 changed.
            Door::Syscall => unsafe {
                asm!("syscall", inlateout("rax") number as i64 => ret, in("rdi") args[0], in("rsi") args[1],
                     in("rdx") args[2], in("r10") args[3], in("r8") args[4], in("r9") args[5],
                     lateout("rcx") _, lateout("r11") _, options(nostack));
            },
            // SAFETY: as above; through `int 0x80` the kernel preserves every register but rax.
            Door::Int80 => unsafe {
                asm!("int 0x80", inlateout("rax") number as i64 => ret, in("rdi") args[0], in("rsi") args[1],
                     in("rdx") args[2], in("r10") args[3], in("r8") args[4], in("r9") args[5],
                     options(nostack));
            },
        }
        ret
    }

    /// As [`Door::call`], with `flags` set in RFLAGS across the door (for the tests of what a
    /// hostile RFLAGS does to the kernel); returns the result and RFLAGS right after the door.
    pub fn call_with_rflags(self, flags: u64, number: u64, a: [u64; 6]) -> (i64, u64) {
        let (ret, after): (i64, u64);
        match self {
            // SAFETY: sets `flags`, makes the system call (number in rax, arguments in rdi, rsi,
            // rdx, r10, r8, r9; `syscall` changes rcx and r11), reads RFLAGS, then clears the
            // flags before any compiled code runs. The pushes and pops balance.
            Door::Syscall => unsafe {
                asm!(
                    "pushfq", "or qword ptr [rsp], {flags}", "popfq",
                    "syscall",
                    "pushfq", "pop {after}",
                    "push {after}", "and qword ptr [rsp], {keep}", "popfq",
                    flags = in(reg) flags, keep = in(reg) !flags, after = out(reg) after,
                    inlateout("rax") number as i64 => ret,
                    in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
                    lateout("rcx") _, lateout("r11") _,
                );
            },
            // SAFETY: as above; `int 0x80` preserves every register but rax.
            Door::Int80 => unsafe {
                asm!(
                    "pushfq", "or qword ptr [rsp], {flags}", "popfq",
                    "int 0x80",
                    "pushfq", "pop {after}",
                    "push {after}", "and qword ptr [rsp], {keep}", "popfq",
                    flags = in(reg) flags, keep = in(reg) !flags, after = out(reg) after,
                    inlateout("rax") number as i64 => ret,
                    in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
                );
            },
        }
        (ret, after)
    }
}

/// `write(fd, buf)` through `syscall`.
pub fn write(fd: u64, buf: &[u8]) -> i64 {
    Door::Syscall.call(nr::WRITE, [fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0])
}

/// Writes all of `buf` to `fd` through `door`, looping over partial writes.
pub fn write_all(door: Door, fd: u64, mut buf: &[u8]) -> Result<(), i64> {
    while !buf.is_empty() {
        let n = door.call(nr::WRITE, [fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0]);
        if n <= 0 {
            return Err(n);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// `read(fd, buf)` through `syscall`.
pub fn read(fd: u64, buf: &mut [u8]) -> i64 {
    Door::Syscall.call(nr::READ, [fd, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0])
}

/// `exit(status)`: never returns.
pub fn exit(status: i32) -> ! {
    Door::Syscall.call(nr::EXIT, [status as u8 as u64, 0, 0, 0, 0, 0]);
    // The kernel never returns from exit; if it did, trap rather than run on.
    loop {
        // SAFETY: ud2 only raises #UD, which ends the process.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }
}

/// `getpid()` through `syscall`.
pub fn getpid() -> i64 {
    Door::Syscall.call(nr::GETPID, [0; 6])
}

/// `yield()` through `syscall`.
pub fn yield_now() -> i64 {
    Door::Syscall.call(nr::YIELD, [0; 6])
}

/// `sleep_ms(ms)` through `syscall`.
pub fn sleep_ms(ms: u64) -> i64 {
    Door::Syscall.call(nr::SLEEP_MS, [ms, 0, 0, 0, 0, 0])
}

/// `uptime_ms()` through `syscall`.
pub fn uptime_ms() -> i64 {
    Door::Syscall.call(nr::UPTIME_MS, [0; 6])
}

static TSC_HZ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// TSC cycles per second, as the kernel told the program at start.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(core::sync::atomic::Ordering::Relaxed)
}

/// TSC cycles in `ms` milliseconds.
pub fn ms_to_tsc(ms: u64) -> u64 {
    ms.saturating_mul(tsc_hz()) / 1000
}

/// `spawn(spec)`: starts a program (`name arg…`); its pid or -errno.
pub fn spawn(spec: &str) -> i64 {
    Door::Syscall.call(nr::SPAWN, [spec.as_ptr() as u64, spec.len() as u64, 0, 0, 0, 0])
}

/// `wait()`: blocks until one of this process's children ends; its pid, or `-ECHILD` once every
/// child has been reported.
pub fn wait() -> i64 {
    Door::Syscall.call(nr::WAIT, [0; 6])
}

/// `disk_info(disk)`: its sector count, or `-ENODEV`.
pub fn disk_info(disk: u64) -> i64 {
    Door::Syscall.call(nr::DISK_INFO, [disk, 0, 0, 0, 0, 0])
}

/// `disk_read(disk, lba, buf)`: fills `buf` (whole sectors) from sector `lba` on; the sectors
/// read or -errno.
pub fn disk_read(disk: u64, lba: u64, buf: &mut [u8]) -> i64 {
    let sectors = buf.len() as u64 / 512;
    Door::Syscall.call(nr::DISK_READ, [disk, lba, buf.as_mut_ptr() as u64, sectors, 0, 0])
}

/// `disk_write(disk, lba, buf)`: writes `buf` (whole sectors) at sector `lba`; the sectors
/// written or -errno.
pub fn disk_write(disk: u64, lba: u64, buf: &[u8]) -> i64 {
    let sectors = buf.len() as u64 / 512;
    Door::Syscall.call(nr::DISK_WRITE, [disk, lba, buf.as_ptr() as u64, sectors, 0, 0])
}

/// The time-stamp counter (ring 3 reads it at native speed).
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the TSC (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A line buffer on the stack that `print!` formats into, so a line costs one `write`.
pub struct Printer {
    door: Door,
    buf: [u8; 256],
    len: usize,
}

impl Printer {
    pub fn new(door: Door) -> Self {
        Self { door, buf: [0; 256], len: 0 }
    }

    pub fn flush(&mut self) {
        let _ = write_all(self.door, 1, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Printer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints through the given door.
pub fn print_via(door: Door, args: fmt::Arguments) {
    let mut p = Printer::new(door);
    let _ = p.write_fmt(args);
    p.flush();
}

/// Prints to fd 1 through `syscall`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print_via($crate::Door::Syscall, format_args!($($arg)*)) };
}

/// Prints a line to fd 1 through `syscall`.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::print_via($crate::Door::Syscall, format_args!("{}\n", format_args!($($arg)*))) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {info}");
    exit(101)
}

/// Runs an operation ring 3 must not be allowed to do; the kernel should kill the process in
/// `op`. If it returns, says so and yields exit status 1 (the kernel failed to stop it).
pub fn attempt(name: &str, what: &str, op: impl FnOnce()) -> i32 {
    println!("{name}: attempting {what} in ring 3");
    op();
    println!("{name}: {what} was NOT stopped");
    1
}

/// A small seeded pseudo-random generator (xorshift64*): the same seed, the same sequence, so
/// a fuzzing run can be repeated.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 is made non-zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// One of `items`, at random.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Formats into `buf` and returns the text (cut short if it does not fit).
pub fn format_into<'a>(buf: &'a mut [u8], args: fmt::Arguments) -> &'a str {
    struct W<'b>(&'b mut [u8], usize);
    impl Write for W<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.1 + s.len();
            self.0.get_mut(self.1..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut w = W(buf, 0);
    let _ = w.write_fmt(args);
    let len = w.1;
    core::str::from_utf8(&buf[..len]).unwrap_or("")
}
