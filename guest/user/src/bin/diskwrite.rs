//! Fills sectors of disk 0 with one byte: `diskwrite LBA COUNT BYTE` (BYTE in decimal, 0–255).
//!
//! Writes 32 KiB at a time with `disk_write`, each call blocking until the device has the
//! sectors, then prints `diskwrite: wrote <COUNT> sectors at <LBA>`. Exits 1 with
//! `diskwrite: <errno> at sector S` if a write fails (`-30` on a read-only disk), 2 on bad
//! arguments.
#![no_std]
#![no_main]

use lde_user::{disk_write, println, Args};

/// Sectors written by one call.
const CHUNK_SECTORS: u64 = 64;

fn main(args: Args) -> i32 {
    let num = |i| args.get(i).and_then(|s: &str| s.parse::<u64>().ok());
    let (Some(lba), Some(count), Some(byte)) = (num(1), num(2), num(3)) else {
        println!("diskwrite: usage: diskwrite LBA COUNT BYTE");
        return 2;
    };
    let Ok(byte) = u8::try_from(byte) else {
        println!("diskwrite: BYTE is 0 to 255, not {byte}");
        return 2;
    };
    let buf = [byte; (CHUNK_SECTORS * 512) as usize];
    let mut done = 0;
    while done < count {
        let n = CHUNK_SECTORS.min(count - done);
        let got = disk_write(0, lba.saturating_add(done), &buf[..(n * 512) as usize]);
        if got != n as i64 {
            println!("diskwrite: {got} at sector {}", lba.saturating_add(done));
            return 1;
        }
        done += n;
    }
    println!("diskwrite: wrote {count} sectors at {lba}");
    0
}

lde_user::entry!(main);
