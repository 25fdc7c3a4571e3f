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
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
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

/// The spans `(x, x + width)` of the rectangles of `class` in the SVG group of `group_class`
/// for `pid`.
fn spans(svg: &str, group_class: &str, pid: u64, class: &str) -> Vec<(f64, f64)> {
    let start = format!("<g class=\"{group_class}\" data-pid=\"{pid}\">");
    let Some(at) = svg.find(&start) else { return Vec::new() };
    let group = &svg[at..at + svg[at..].find("</g>").unwrap()];
    let attr = |rect: &str, name: &str| -> f64 {
        let key = format!(" {name}=\"");
        let from = rect.find(&key).unwrap() + key.len();
        rect[from..from + rect[from..].find('"').unwrap()].parse().unwrap()
    };
    group
        .split("<rect")
        .filter(|r| r.contains(&format!("class=\"{class}\"")))
        .map(|r| (attr(r, "x"), attr(r, "x") + attr(r, "width")))
        .collect()
}

#[test]
fn a_process_blocked_on_the_disk_lets_another_run() {
    if !common::kvm_available("a_process_blocked_on_the_disk_lets_another_run") {
        return;
    }
    let img = image("lecture.img", &random_bytes(1 << 20, 5));
    let (report, timeline) = (temp("lecture.json"), temp("lecture.svg"));
    let out = lde(&[
        "run",
        "-q",
        "--report",
        report.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--disk",
        &img,
        "disksum",
        "counter 300",
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    common::validate_report(&report);
    // 32 calls of 32 KiB, each cut into requests of at most 20 KiB: 64 requests, 1 MiB.
    let guest_disk = &report["guest"]["disk"];
    assert_eq!((guest_disk["requests"].as_u64(), guest_disk["read_bytes"].as_u64()), (Some(64), Some(1 << 20)));
    let device = &report["disks"][0];
    assert_eq!((device["requests"].as_u64(), device["bytes_read"].as_u64()), (Some(64), Some(1 << 20)));
    let interrupts = device["interrupts"].as_u64().unwrap();
    assert!((1..=64).contains(&interrupts), "one interrupt per batch of completions: {device}");
    let procs = report["guest"]["processes"].as_array().unwrap();
    let by_name = |name: &str| procs.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name}: {procs:?}"));
    let (disksum, counter) = (by_name("disksum"), by_name("counter"));
    assert_eq!(disksum["disk_requests"].as_u64(), Some(64));
    assert!(disksum["disk_wait_cycles"].as_u64().unwrap() > 0, "{disksum}");
    assert!(disksum["voluntary_switches"].as_u64().unwrap() >= 64, "it blocked for each request: {disksum}");
    assert_eq!(counter["disk_requests"].as_u64(), Some(0));
    // The timeline: counter ran while disksum was blocked on the disk.
    let svg = std::fs::read_to_string(&timeline).unwrap();
    let pid = |p: &serde_json::Value| p["pid"].as_u64().unwrap();
    let waits = spans(&svg, "disk-waits", pid(disksum), "disk-wait");
    let runs = spans(&svg, "lane", pid(counter), "slice");
    assert!(!waits.is_empty(), "disksum's blocked spans are drawn");
    let overlap = waits.iter().any(|w| runs.iter().any(|r| r.0 < w.1 && w.0 < r.1));
    assert!(overlap, "counter ran while disksum waited: waits {waits:?}, counter ran {runs:?}");
}

/// Starts `lde run ARGS…` and returns it once its output has shown `line`.
fn started_until(args: &[&str], line: &str) -> std::process::Child {
    let mut child = Command::new(common::lde_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(l)) = lines.next() {
        if l.trim_end_matches('\r') == line {
            // The rest is read too: a closed pipe would end lde (exit 141) before the test does.
            std::thread::spawn(move || lines.for_each(drop));
            return child;
        }
        seen.push(l);
    }
    let status = child.wait();
    panic!("lde ended ({status:?}) without printing {line:?}: {seen:?}");
}

#[test]
fn a_completed_write_is_in_the_file_however_the_run_ends() {
    if !common::kvm_available("a_completed_write_is_in_the_file_however_the_run_ends") {
        return;
    }
    for (how, expected) in [("timeout", 124), ("sigterm", 130)] {
        let img = image(&format!("kept-{how}.img"), &[0; 16 * SECTOR]);
        let mut args = vec!["run", "-q", "--disk", &img, "diskwrite 2 8 77", "spin 0"];
        if how == "timeout" {
            // Long enough for the write on any host; the test waits for its line, not for time.
            args.splice(2..2, ["--timeout", "10"]);
        }
        let mut child = started_until(&args, "diskwrite: wrote 8 sectors at 2");
        if how == "sigterm" {
            // SAFETY: a signal to our own child.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        }
        assert_eq!(child.wait().unwrap().code(), Some(expected), "{how}");
        let after = std::fs::read(&img).unwrap();
        assert!(after[2 * SECTOR..10 * SECTOR].iter().all(|&b| b == 77), "{how}: the write is in the file");
        assert!(after[..2 * SECTOR].iter().chain(&after[10 * SECTOR..]).all(|&b| b == 0), "{how}");
    }
}

#[test]
fn a_large_sparse_image_is_used_in_place() {
    for host in hosts("a_large_sparse_image_is_used_in_place") {
        let path = temp(&format!("sparse-{host:?}.img"));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(1 << 40).unwrap(); // 1 TiB, no block allocated
        let img = path.to_str().unwrap();
        let lba: u64 = 2_000_000_000;
        let out = host.run(&["--disk", img, &format!("diskwrite {lba} 2 9")]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().iter().any(|l| l.starts_with("kernel: disk 0: 2147483648 sectors")), "{host:?}: {out:?}");
        let mut written = vec![0u8; 2 * SECTOR];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut written, lba * SECTOR as u64).unwrap();
        assert!(written.iter().all(|&b| b == 9), "{host:?}");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1 << 40, "{host:?}");
        // Only what was written takes room: the image was neither read whole nor filled.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 1 << 20, "{host:?}: {meta:?}");
        std::fs::remove_file(&path).unwrap();
    }
}
