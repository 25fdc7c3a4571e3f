//! Block I/O by DMA: `--disk` images behind a virtio-blk device, read and written by ring-3
//! programs that block in the kernel until the device's interrupt wakes them; the same image
//! under lde and under QEMU (microvm, virtio-mmio).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{hosts, lde, one_line, temp};

const SECTOR: usize = 512;

/// The FNV-1a 64 hash `disksum` prints.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `len` bytes that are not all alike (a fixed xorshift stream, so a failure repeats).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn image(name: &str, bytes: &[u8]) -> String {
    let path = temp(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn disksum_prints_the_hash_the_host_computes() {
    let bytes = random_bytes(1 << 20, 7);
    let want = format!("disksum: {} bytes fnv1a64={:#018x}", bytes.len(), fnv1a64(&bytes));
    for host in hosts("disksum_prints_the_hash_the_host_computes") {
        let img = image(&format!("sum-{host:?}.img"), &bytes);
        let out = host.run(&["--disk", &img, "disksum"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&want.as_str()), "{host:?}: want {want}: {out:?}");
        assert_eq!(std::fs::read(&img).unwrap(), bytes, "{host:?}: reading changed the image");
    }
}

#[test]
fn diskwrite_changes_its_sectors_and_nothing_else() {
    let before = random_bytes(64 * SECTOR, 11);
    for host in hosts("diskwrite_changes_its_sectors_and_nothing_else") {
        let img = image(&format!("write-{host:?}.img"), &before);
        let out = host.run(&["--disk", &img, "diskwrite 8 4 171"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"diskwrite: wrote 4 sectors at 8"), "{host:?}: {out:?}");
        let after = std::fs::read(&img).unwrap();
        assert_eq!(after.len(), before.len());
        assert!(after[8 * SECTOR..12 * SECTOR].iter().all(|&b| b == 171), "{host:?}");
        assert_eq!(after[..8 * SECTOR], before[..8 * SECTOR], "{host:?}: sectors before 8 changed");
        assert_eq!(after[12 * SECTOR..], before[12 * SECTOR..], "{host:?}: sectors after 11 changed");
    }
}

#[test]
fn a_read_only_disk_refuses_writes_with_erofs() {
    let before = random_bytes(16 * SECTOR, 3);
    for host in hosts("a_read_only_disk_refuses_writes_with_erofs") {
        let img = image(&format!("ro-{host:?}.img"), &before);
        let out = host.run(&["--disk", &format!("{img},ro"), "diskwrite 0 1 5"]);
        assert_eq!(out.status, Some(1), "{host:?}: the process failed: {out:?}");
        assert!(out.lines().contains(&"diskwrite: -30 at sector 0"), "{host:?}: {out:?}");
        assert_eq!(std::fs::read(&img).unwrap(), before, "{host:?}");
    }
}

#[test]
fn missing_disks_and_ranges_past_the_end_get_their_errors() {
    for host in hosts("missing_disks_and_ranges_past_the_end_get_their_errors") {
        let out = host.run(&["disksum"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"disksum: disk 0: -19"), "{host:?}: {out:?}");
        let img = image(&format!("short-{host:?}.img"), &[0; 4 * SECTOR]);
        let out = host.run(&["--disk", &img, "diskwrite 3 2 1"]);
        assert!(out.lines().contains(&"diskwrite: -22 at sector 3"), "{host:?}: {out:?}");
        assert_eq!(std::fs::read(&img).unwrap(), vec![0; 4 * SECTOR], "{host:?}");
    }
}

#[test]
fn the_fuzzer_with_a_disk_gets_only_documented_answers() {
    for host in hosts("the_fuzzer_with_a_disk_gets_only_documented_answers") {
        let img = image(&format!("fuzz-{host:?}.img"), &[0; 64 * SECTOR]);
        let out = host.run(&["--disk", &img, "fuzz 3000 99"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(
            out.lines().iter().any(|l| l.starts_with("fuzz: 3000 calls") && l.ends_with(", 0 unexpected")),
            "{host:?}: {out:?}"
        );
    }
}

#[test]
fn bad_images_get_one_line_and_exit_72() {
    if !common::kvm_available("bad_images_get_one_line_and_exit_72") {
        return;
    }
    let odd = image("odd.img", &[0; 1000]);
    let dir = temp("a-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = temp("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let big = temp("big.img");
    std::fs::File::create(&big).unwrap().set_len((1 << 41) + 512).unwrap(); // sparse: 2 TiB + 1 sector
    let cases = [
        (odd.clone(), "not a whole number of 512-byte sectors"),
        (temp("none.img").to_str().unwrap().to_owned(), "cannot open disk image"),
        (dir.to_str().unwrap().to_owned(), "is a directory"),
        (fifo.to_str().unwrap().to_owned(), "not a regular file"),
        (big.to_str().unwrap().to_owned(), "lde's disks hold at most"),
        (format!("{odd},rw"), "unknown disk option"),
    ];
    for (arg, says) in cases {
        let out = lde(&["run", "--disk", &arg, "hello"]);
        let expected = if arg.ends_with(",rw") { 2 } else { 72 };
        assert_eq!(out.status, Some(expected), "{arg}: {out:?}");
        assert!(one_line(&out.stderr).contains(says), "{arg}: {out:?}");
    }
}

#[test]
fn a_second_lde_on_a_writable_image_is_refused() {
    if !common::kvm_available("a_second_lde_on_a_writable_image_is_refused") {
        return;
    }
    let img = image("locked.img", &[0; 8 * SECTOR]);
    // The first run reads its input until it ends: it holds the image until then.
    let mut first = Command::new(common::lde_bin())
        .args(["run", "--disk", &img, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("lde kernel "))), "the first run booted");
    let out = lde(&["run", "--disk", &img, "hello"]);
    assert_eq!(out.status, Some(72), "{out:?}");
    assert!(one_line(&out.stderr).contains("in use by another process"), "{out:?}");
    let ro = lde(&["run", "--disk", &format!("{img},ro"), "hello"]);
    assert_eq!(ro.status, Some(72), "a reader waits for no writer either: {ro:?}");
    drop(first.stdin.take());
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let after = lde(&["run", "-q", "--disk", &img, "hello"]);
    assert_eq!(after.status, Some(0), "the lock went with the first run: {after:?}");
}
