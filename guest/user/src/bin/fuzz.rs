//! System-call fuzzer: N calls (default 10000) of every system call with random arguments, through both doors, with DF, AC and NT at random.
//!
//! Arguments mix small values, kernel addresses, non-canonical and upper-half addresses, user
//! addresses and huge lengths; numbers are every call and random ones. Each call goes through
//! `syscall` or `int 0x80` with any of DF, AC and NT set in RFLAGS (set right before the door,
//! cleared right after, in asm), and DF and AC must come back as they were. Calls that would
//! end, stall or block the fuzzer get arguments that make them fail: `exit` a status above
//! 255, `sleep_ms` a few ms or more than the maximum, `read` of fd 0 an unmapped buffer; `write`
//! is never aimed at fd 1 or 2 (it would flood the console). `spawn` gets random specs and now
//! and then `hello` (which runs, if the initrd holds it); `fixup` random addresses (cleared at
//! the end); `wait` blocks only while a `hello` it started runs, and answers its pid or
//! `-ECHILD`; the disk calls run on whatever disks the run has (give it a scratch image: it
//! writes anywhere on it), `disk_read` only into a buffer of its own or memory not its own. Every answer must be one the call documents: `fuzz: N calls, E errors, S spawned,
//! U unexpected` ends the run, and the program exits 1 if U is not 0.
#![no_std]
#![no_main]

use lde_abi::syscall::{
    EAGAIN, EBADF, ECHILD, EFAULT, EINVAL, EIO, ENODEV, ENOENT, ENOEXEC, ENOMEM, ENOSYS, EROFS, SLEEP_MAX_MS, WRITE_MAX,
};
use lde_abi::user::{USER_BASE, USER_END};
use lde_user::{getpid, nr, println, Args, Door, Rng};

const DF: u64 = 1 << 10;
const AC: u64 = 1 << 18;
const NT: u64 = 1 << 14;

fn value(rng: &mut Rng) -> u64 {
    let interesting = [
        0,
        1,
        2,
        7,
        4096,
        0xfff,
        0x10_0000,
        0x10_c000,
        0xfee0_0000,
        0xbfff_f000,
        0x0000_8000_0000_0000,
        0xffff_8000_0000_0000,
        0xffff_ffff_8000_0000,
        u64::MAX,
        u64::MAX - 4095,
        USER_BASE,
        USER_BASE - 1,
        USER_END,
        USER_END - 1,
        USER_END - 8,
        i64::MAX as u64,
        1 << 40,
    ];
    match rng.next_u64() % 4 {
        0 => rng.pick(&interesting),
        1 => rng.next_u64(),
        2 => rng.next_u64() % 8192,
        _ => USER_BASE + rng.next_u64() % 0x10_0000,
    }
}

/// Specs `spawn` may get besides random memory: one that runs, and ones it must refuse.
const SPECS: [&[u8]; 6] =
    [b"hello", b"", b"   ", b"no-such-program", b"hello \xff\xfe", b"a b c d e f g h i j k l m n o p q"];

/// Where `disk_read` may write: its whole buffer, and nothing else of the fuzzer's.
static mut SCRATCH: [u8; 4096] = [0; 4096];

/// Changes the arguments of calls that would end, stall, block or flood the fuzzer.
fn tame(rng: &mut Rng, number: u64, a: &mut [u64; 6]) {
    match number {
        // A read into the fuzzer's own data or stack would overwrite it: aim it at SCRATCH (at
        // most its length) or at memory that is not the caller's.
        nr::DISK_READ if rng.next_u64().is_multiple_of(2) => {
            a[2] = core::ptr::addr_of!(SCRATCH) as u64;
            a[3] %= 9;
        }
        nr::DISK_READ => a[2] = rng.pick(&[0, 0xffff_8000_0000_0000, USER_END, 1 << 47, 0x10_0000]),
        nr::EXIT => a[0] = a[0].max(256),
        nr::SLEEP_MS if a[0] > SLEEP_MAX_MS => {}
        nr::SLEEP_MS => a[0] %= 3,
        nr::READ if a[0] == 0 => a[1] = rng.pick(&[0, 0xffff_8000_0000_0000, USER_END, 1 << 47]) | 1,
        nr::WRITE if a[0] == 1 || a[0] == 2 => a[0] = rng.pick(&[0, 3, 1 << 20, u64::MAX]),
        nr::SPAWN if rng.next_u64().is_multiple_of(4) => {
            let spec = if rng.next_u64().is_multiple_of(16) { SPECS[0] } else { rng.pick(&SPECS[1..]) };
            a[0] = spec.as_ptr() as u64;
            a[1] = spec.len() as u64;
        }
        _ => {}
    }
}

/// Whether `r` is an answer call `number` documents (`pid` is the caller's).
fn documented(number: u64, a: &[u64; 6], r: i64, pid: i64) -> bool {
    match number {
        nr::NULL | nr::YIELD => r == 0,
        nr::WRITE => r == -EBADF || r == -EFAULT || (0..=WRITE_MAX as i64).contains(&r),
        nr::EXIT => r == -EINVAL,
        nr::GETPID => r == pid,
        nr::SLEEP_MS => r == if a[0] > SLEEP_MAX_MS { -EINVAL } else { 0 },
        nr::READ => r == -EBADF || r == -EFAULT || r == 0,
        nr::UPTIME_MS => r >= 0,
        nr::SPAWN => r > 0 || [-ENOENT, -ENOEXEC, -EAGAIN, -ENOMEM, -EINVAL, -EFAULT].contains(&r),
        nr::FIXUP => r >= 0 || r == -EFAULT,
        nr::WAIT => r > pid || r == -ECHILD,
        nr::DISK_INFO => r > 0 || r == -ENODEV,
        // A whole transfer answers its sector count.
        nr::DISK_READ | nr::DISK_WRITE => r == a[3] as i64 || [-ENODEV, -EINVAL, -EFAULT, -EROFS, -EIO].contains(&r),
        _ => r == -ENOSYS,
    }
}

fn main(args: Args) -> i32 {
    let (Some(n), Some(seed)) = (args.number(1, 10_000), args.number(2, 0x1de_5eed)) else {
        println!("usage: fuzz [N] [SEED]");
        return 2;
    };
    let mut rng = Rng::new(seed);
    let pid = getpid();
    let (mut unexpected, mut errors, mut spawned) = (0, 0, 0);
    for _ in 0..n {
        let number = match rng.next_u64() % 8 {
            0 => rng.next_u64(),
            1 => nr::COUNT + rng.next_u64() % 4,
            _ => rng.next_u64() % nr::COUNT,
        };
        let mut a = core::array::from_fn(|_| value(&mut rng));
        tame(&mut rng, number, &mut a);
        let door = if rng.next_u64().is_multiple_of(2) { Door::Syscall } else { Door::Int80 };
        let flags = rng.next_u64() & (DF | AC | NT);
        let (r, after) = door.call_with_rflags(flags, number, a);
        if r < 0 {
            errors += 1;
        } else if number == nr::SPAWN {
            spawned += 1;
        }
        let flags_kept = after & (DF | AC) == flags & (DF | AC);
        if !documented(number, &a, r, pid) || !flags_kept {
            unexpected += 1;
            println!("fuzz: call {number} {a:x?} via {door:?} with flags {flags:#x} returned {r}, flags {after:#x}");
        }
    }
    Door::Syscall.call(nr::FIXUP, [0; 6]);
    println!("fuzz: {n} calls, {errors} errors, {spawned} spawned, {unexpected} unexpected");
    i32::from(unexpected != 0)
}

lde_user::entry!(main);
