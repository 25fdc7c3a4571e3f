//! Reads a whole disk and prints its size and FNV-1a 64 hash: `disksum [DISK]` (default disk 0).
//!
//! It reads 32 KiB at a time with `disk_read`, each call blocking until the device has copied
//! the sectors into its buffer, and hashes every byte in order. Its line, for a host to compare
//! with its own hash of the image: `disksum: <bytes> bytes fnv1a64=0x<16 hex digits>`. Exits 1
//! with `disksum: disk D: <errno>` if the disk is missing or a read fails.
#![no_std]
#![no_main]

use lde_user::{disk_info, disk_read, println, Args};

/// Sectors read by one call.
const CHUNK_SECTORS: u64 = 64;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn main(args: Args) -> i32 {
    let disk = args.number(1, 0).unwrap_or(u64::MAX);
    let sectors = disk_info(disk);
    if sectors < 0 {
        println!("disksum: disk {disk}: {sectors}");
        return 1;
    }
    let sectors = sectors as u64;
    let mut buf = [0u8; (CHUNK_SECTORS * 512) as usize];
    let mut hash = FNV_OFFSET;
    let mut lba = 0;
    while lba < sectors {
        let n = CHUNK_SECTORS.min(sectors - lba);
        let part = &mut buf[..(n * 512) as usize];
        let got = disk_read(disk, lba, part);
        if got != n as i64 {
            println!("disksum: disk {disk}: {got} at sector {lba}");
            return 1;
        }
        for &b in part.iter() {
            hash = (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        lba += n;
    }
    println!("disksum: {} bytes fnv1a64={hash:#018x}", sectors * 512);
    0
}

lde_user::entry!(main);
