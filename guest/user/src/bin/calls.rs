//! Makes N getpid calls through each door (default 1000), or N through one (`calls N syscall|int80 [null]`), and checks every result.
#![no_std]
#![no_main]

use lde_user::{nr, println, Args, Door};

const USAGE: &str = "usage: calls [N [syscall|int80|both [getpid|null]]]";

fn main(args: Args) -> i32 {
    let Some(n) = args.number(1, 1000) else {
        println!("{USAGE}");
        return 2;
    };
    let doors: &[Door] = match args.get(2) {
        None | Some("both") => &[Door::Syscall, Door::Int80],
        Some("syscall") => &[Door::Syscall],
        Some("int80") => &[Door::Int80],
        Some(_) => {
            println!("{USAGE}");
            return 2;
        }
    };
    let pid = lde_user::getpid();
    // `lde bench` counts the kernel's instructions per call with `calls N DOOR null`.
    let (number, name, expected) = match args.get(3) {
        None | Some("getpid") => (nr::GETPID, "getpid", pid),
        Some("null") => (nr::NULL, "null", 0),
        Some(_) => {
            println!("{USAGE}");
            return 2;
        }
    };
    let mut wrong = 0;
    for &door in doors {
        for _ in 0..n {
            if door.call(number, [0; 6]) != expected {
                wrong += 1;
            }
        }
    }
    match doors {
        [door] => println!("calls: {n} {name} via {} (pid {pid}), {wrong} wrong", door_name(*door)),
        _ => println!("calls: {n} {name} via syscall and {n} via int 0x80 (pid {pid}), {wrong} wrong"),
    }
    i32::from(wrong != 0)
}

fn door_name(door: Door) -> &'static str {
    match door {
        Door::Syscall => "syscall",
        Door::Int80 => "int 0x80",
    }
}

lde_user::entry!(main);
