//! Copies its input (fd 0, the serial port) to its output until the input ends.
#![no_std]
#![no_main]

use lde_user::{println, read, write_all, Args, Door};

fn main(_args: Args) -> i32 {
    let mut buf = [0u8; 256];
    let mut total = 0;
    loop {
        let n = read(0, &mut buf);
        if n < 0 {
            println!("cat: read failed: {n}");
            return 1;
        }
        if n == 0 {
            break;
        }
        if write_all(Door::Syscall, 1, &buf[..n as usize]).is_err() {
            return 1;
        }
        total += n;
    }
    println!("cat: {total} bytes, end of input");
    0
}

lde_user::entry!(main);
