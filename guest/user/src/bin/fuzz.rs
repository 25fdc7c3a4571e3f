//! System-call fuzzer: N calls (default 10000) with random numbers, pointers and lengths.
//!
//! Arguments mix small values, kernel addresses, non-canonical and upper-half addresses, user
//! addresses and huge lengths, through both doors at random. `exit`, `sleep_ms` and `read` are
//! left out (they would end, stall or block the fuzzer), and `write` is not aimed at a valid
//! buffer on fd 1/2 (it would flood the console). Every answer must be a result or one of the
//! documented error codes.
#![no_std]
#![no_main]

use lde_abi::syscall::{EBADF, EFAULT, EINVAL, ENOSYS};
use lde_abi::user::{USER_BASE, USER_END};
use lde_user::{nr, println, Args, Door, Rng};

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

fn main(args: Args) -> i32 {
    let (Some(n), Some(seed)) = (args.number(1, 10_000), args.number(2, 0x1de_5eed)) else {
        println!("usage: fuzz [N] [SEED]");
        return 2;
    };
    let mut rng = Rng::new(seed);
    let numbers = [nr::NULL, nr::WRITE, nr::GETPID, nr::YIELD, nr::UPTIME_MS, nr::COUNT, 999, u64::MAX];
    let allowed = [-EBADF, -EFAULT, -EINVAL, -ENOSYS];
    let mut unexpected = 0;
    let mut errors = 0;
    for _ in 0..n {
        let number = if rng.next_u64().is_multiple_of(8) { rng.next_u64() } else { rng.pick(&numbers) };
        if matches!(number, nr::EXIT | nr::SLEEP_MS | nr::READ) {
            continue;
        }
        let mut a =
            [value(&mut rng), value(&mut rng), value(&mut rng), value(&mut rng), value(&mut rng), value(&mut rng)];
        if number == nr::WRITE && (a[0] == 1 || a[0] == 2) {
            a[0] = rng.pick(&[0, 3, 1 << 20, u64::MAX]);
        }
        let door = if rng.next_u64().is_multiple_of(2) { Door::Syscall } else { Door::Int80 };
        let r = door.call(number, a);
        if r < 0 {
            errors += 1;
            if !allowed.contains(&r) {
                unexpected += 1;
                println!("fuzz: call {number} {a:x?} via {door:?} returned {r}");
            }
        }
    }
    println!("fuzz: {n} calls, {errors} errors, {unexpected} unexpected");
    i32::from(unexpected != 0)
}

lde_user::entry!(main);
