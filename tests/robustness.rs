//! lde under careless and hostile use on the host's side: closed pipes, signals under a
//! terminal, special and oversized input files, a kernel whose symbol table is a bomb, limits,
//! one path for two outputs, a socket server that never answers, and the seccomp filter. Each
//! case ends with a documented exit status, at most one `lde:` line of error, never a panic,
//! and the terminal as it was.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{kvm_available, lde, lde_bin, run_with_deadline, Output};

/// A directory of one test's files, removed with everything in it when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lde-robust-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// The one error line of a refused command: exit status `status`, exactly one line on stderr
/// ([`common::one_line`]), starting with `lde:`.
fn refusal(out: &Output, status: i32) -> &str {
    assert_eq!(out.status, Some(status), "{out:?}");
    let line = common::one_line(&out.stderr);
    assert!(line.starts_with("lde: "), "{out:?}");
    line
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Waits for `child` at most `deadline` (or kills it and fails the test); its exit code and
/// stderr.
fn wait(mut child: Child, deadline: Duration) -> (Option<i32>, String) {
    let status = common::wait_with_deadline(&mut child, "lde", deadline);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).ok();
    }
    (status, stderr)
}

#[test]
fn a_closed_stdout_ends_lde_quietly() {
    let child = Command::new(lde_bin())
        .args(["run", "--list"])
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = wait(child, Duration::from_secs(30));
    assert_eq!((status, stderr.as_str()), (Some(141), ""), "SIGPIPE's status, no panic, no message");
    if !kvm_available("a_closed_stdout_ends_lde_quietly") {
        return;
    }
    for (args, closed_stderr) in [
        (&["run", "hello"][..], false),
        (&["run", "hello"][..], true),
        (&["probe"][..], false),
        (&["run", "--watch", "spin 20000"][..], true),
        (&["run", "--timeout", "60", "counter 20000", "sleeper 200 100"][..], false),
    ] {
        let child = Command::new(lde_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(if closed_stderr { Stdio::null() } else { closed_pipe() })
            .stderr(if closed_stderr { closed_pipe() } else { Stdio::piped() })
            .spawn()
            .unwrap();
        // The guest programs would run for 20 s: a closed output stops them long before.
        let (status, stderr) = wait(child, Duration::from_secs(15));
        assert_eq!(status, Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A pseudo-terminal: lde's stdin is its slave side.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Pty {
        let (master, slave) = common::pty(None);
        Pty { master, slave }
    }

    /// `stty -g` of the terminal: every setting, in a form two states compare by.
    fn stty(&self) -> String {
        let out = Command::new("stty").arg("-g").stdin(Stdio::from(self.slave.try_clone().unwrap())).output().unwrap();
        assert!(out.status.success(), "stty: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether canonical mode is off (lde's raw mode in force).
    fn raw(&self) -> bool {
        // SAFETY: termios is plain data that tcgetattr fills for this terminal fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios; the fd is the open slave side.
        assert_eq!(unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) }, 0);
        t.c_lflag & libc::ICANON == 0
    }
}

#[test]
fn every_stop_signal_restores_the_terminal_and_removes_the_socket() {
    let scratch = Scratch::new("signals");
    if !kvm_available("every_stop_signal_restores_the_terminal_and_removes_the_socket") {
        return;
    }
    let signals = [
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
    ];
    for (signal, name) in signals {
        let pty = Pty::open();
        let before = pty.stty();
        let (sock, report) = (scratch.path(&format!("{name}.sock")), scratch.path(&format!("{name}.json")));
        let mut cmd = Command::new(lde_bin());
        cmd.args(["run", "-q", "--timeout", "120", "--api-sock", sock.to_str().unwrap()])
            .args(["--report", report.to_str().unwrap(), "spin 0"])
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Its own process group, as a shell's job: the test's signals reach only lde.
        cmd.process_group(0);
        let child = cmd.spawn().unwrap();
        let start = Instant::now();
        while !(pty.raw() && sock.exists()) {
            assert!(start.elapsed() < Duration::from_secs(30), "{name}: lde never switched the terminal to raw mode");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: sends a signal to the child we spawned and still own.
        unsafe { libc::kill(child.id() as i32, signal) };
        let (status, stderr) = wait(child, Duration::from_secs(60));
        assert_eq!(status, Some(130), "{name}: {stderr}");
        assert!(stderr.contains(&format!("lde: interrupted by signal {signal}")), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(pty.stty(), before, "{name}: the terminal is restored");
        assert!(!sock.exists(), "{name}: the socket is removed");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(report["outcome"]["kind"], "interrupted", "{name}");
        assert_eq!(report["outcome"]["detail"], format!("stopped by {name}"));
        drop(pty.master);
    }
}

#[test]
fn special_and_oversized_input_files_are_refused_unread() {
    let scratch = Scratch::new("files");
    let sparse = scratch.path("sparse.elf");
    std::fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    let fifo = scratch.path("fifo.elf");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let dir = std::env::temp_dir();
    let cases: [(&str, &Path, &str); 6] = [
        ("--kernel", Path::new("/dev/zero"), "it is a character device, not a regular file"),
        ("--kernel", &fifo, "it is a FIFO, not a regular file"),
        ("--kernel", &dir, "it is a directory, not a regular file"),
        ("--kernel", &sparse, "it is 2147483648 bytes, more than the limit of 67108864 bytes"),
        ("--program", &sparse, "it is 2147483648 bytes, more than the limit of 16777216 bytes"),
        ("--program", Path::new("/dev/zero"), "it is a character device, not a regular file"),
    ];
    for (flag, path, reason) in cases {
        let mut cmd = Command::new(lde_bin());
        cmd.args(["run", flag, path.to_str().unwrap(), "hello"]);
        // Bounded: a FIFO without a writer or /dev/zero read to its end would never finish.
        let out = run_with_deadline(cmd, Duration::from_secs(20));
        let line = refusal(&out, 72);
        assert!(line.ends_with(reason), "{flag} {path:?}: {line}");
    }
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
}
fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// The exported kernel with a symbol-table bomb: `count` symbols before the real ones whose
/// names start in `run` bytes of 'A' ended by one NUL. A lookup that reads each name to its
/// NUL reads `count * run` bytes; one that compares only as far as the name sought, a few MB.
fn symtab_bomb(kernel: &[u8], count: usize, run: usize) -> Vec<u8> {
    let (shoff, shentsize, shnum) = (u64_at(kernel, 0x28), u16_at(kernel, 0x3a), u16_at(kernel, 0x3c));
    let header = |i: usize| shoff + i * shentsize;
    let symtab =
        (0..shnum).find(|&i| u32::from_le_bytes(kernel[header(i) + 4..header(i) + 8].try_into().unwrap()) == 2);
    let symtab = header(symtab.expect("the kernel has a .symtab"));
    let strtab = header(u32::from_le_bytes(kernel[symtab + 0x28..symtab + 0x2c].try_into().unwrap()) as usize);
    let (sym_off, sym_size) = (u64_at(kernel, symtab + 0x18), u64_at(kernel, symtab + 0x20));
    let (str_off, str_size) = (u64_at(kernel, strtab + 0x18), u64_at(kernel, strtab + 0x20));
    let mut out = kernel.to_vec();
    out.resize(out.len().next_multiple_of(8), 0);
    // The new string table: the old one, then the run of 'A's.
    let new_str_off = out.len();
    out.extend_from_slice(&kernel[str_off..str_off + str_size]);
    out.extend(std::iter::repeat_n(b'A', run));
    out.push(0);
    out.resize(out.len().next_multiple_of(8), 0);
    // The new symbol table: the null symbol, the bombs, then the real symbols after it.
    let new_sym_off = out.len();
    out.extend_from_slice(&kernel[sym_off..sym_off + 24]);
    for i in 0..count {
        let mut sym = [0u8; 24];
        sym[..4].copy_from_slice(&((str_size + i % 64) as u32).to_le_bytes());
        out.extend_from_slice(&sym);
    }
    out.extend_from_slice(&kernel[sym_off + 24..sym_off + sym_size]);
    let new_sym_size = out.len() - new_sym_off;
    for (at, value) in [
        (symtab + 0x18, new_sym_off),
        (symtab + 0x20, new_sym_size),
        (strtab + 0x18, new_str_off),
        (strtab + 0x20, str_size + run + 1),
    ] {
        out[at..at + 8].copy_from_slice(&(value as u64).to_le_bytes());
    }
    out
}

#[test]
fn a_symbol_table_bomb_boots_in_bounded_time() {
    let scratch = Scratch::new("bomb");
    if !kvm_available("a_symbol_table_bomb_boots_in_bounded_time") {
        return;
    }
    let dir = scratch.path("export");
    let out = lde(&["export", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let kernel = std::fs::read(dir.join("kernel.elf")).unwrap();
    // 400,000 names of 2 MiB each: 800 GB to read for a lookup that scans every name.
    let bomb = symtab_bomb(&kernel, 400_000, 2 << 20);
    let path = scratch.path("bomb.elf");
    std::fs::write(&path, &bomb).unwrap();
    let mut cmd = Command::new(lde_bin());
    cmd.args(["run", "--timeout", "60", "--kernel", path.to_str().unwrap(), "hello"]);
    let out = run_with_deadline(cmd, Duration::from_secs(90));
    assert_eq!(out.status, Some(0), "the bomb boots and runs: {out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    // The stats page was found behind the bombs: the summary comes from it.
    assert!(out.stderr.contains("lde: processes: 1 started, 0 killed: hello 1 exit 0"), "{out:?}");
}

#[test]
fn limits_are_usage_errors_that_name_the_limit() {
    let scratch = Scratch::new("limits");
    let long = format!("lde.note={}", "x".repeat(10_000));
    let line = refusal(&lde(&["run", "--cmdline", &long]), 2).to_string();
    assert!(line.contains("more than the limit of 4095"), "{line}");
    let many: Vec<&str> = std::iter::once("run").chain(std::iter::repeat_n("hello", 300)).collect();
    let line = refusal(&lde(&many), 2).to_string();
    assert!(line.contains("more than the limit of 4095 (fewer or shorter programs"), "{line}");
    for tiny in ["1e-10", "0.0000001", "NaN", "inf"] {
        let line = refusal(&lde(&["run", "--timeout", tiny]), 2).to_string();
        assert!(line.contains("--timeout"), "{tiny}: {line}");
    }
    let kernel = scratch.path("truncated.elf");
    std::fs::write(&kernel, &lde::guest::KERNEL[..lde::guest::KERNEL.len() / 3]).unwrap();
    let line = refusal(&lde(&["run", "--kernel", kernel.to_str().unwrap()]), 72).to_string();
    assert!(line.contains(": the file is truncated: a segment needs its bytes up to offset"), "{line}");
}

#[test]
fn one_file_for_two_uses_is_refused_before_anything_runs() {
    let scratch = Scratch::new("paths");
    let kept = scratch.path("kept");
    std::fs::write(&kept, b"keep me").unwrap();
    let (k, x) = (kept.to_str().unwrap(), scratch.path("new.json"));
    let x = x.to_str().unwrap();
    let dotted = format!("{}/./new.json", scratch.0.display());
    for (args, first, second) in [
        (vec!["--report", x, "--timeline", &dotted], "--report", "--timeline"),
        (vec!["--report", k, "--api-sock", k], "--report", "--api-sock"),
        (vec!["--timeline", k, "--kernel", k], "--timeline", "--kernel"),
        (vec!["--api-sock", k, "--program", k], "--api-sock", "--program"),
    ] {
        let out = lde(&[&["run"][..], &args, &["hello"]].concat());
        let line = refusal(&out, 2);
        assert!(line.contains(&format!("{first} and {second} name the same file")), "{line}");
        assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
        assert!(!Path::new(x).exists(), "nothing was created");
        assert_eq!(std::fs::read(&kept).unwrap(), b"keep me", "nothing was truncated");
    }
    let out = lde(&["bench", "--json", k, "--histogram", k]);
    assert!(refusal(&out, 2).contains("--json and --histogram name the same file"), "{out:?}");
}

#[test]
fn lde_stats_gives_up_on_a_server_that_never_answers() {
    let scratch = Scratch::new("silent");
    let path = scratch.path("silent.sock");
    let _server = std::os::unix::net::UnixListener::bind(&path).unwrap(); // never accepts
    let mut cmd = Command::new(lde_bin());
    cmd.args(["stats", "--timeout", "1", path.to_str().unwrap()]);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let line = refusal(&out, 74);
    assert!(line.ends_with("silent.sock did not answer within 1 s"), "{line}");
}

#[test]
fn a_stale_socket_is_replaced_and_a_served_one_kept() {
    let scratch = Scratch::new("stale");
    if !kvm_available("a_stale_socket_is_replaced_and_a_served_one_kept") {
        return;
    }
    let path = scratch.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // the file stays, nobody serves it
    let out = lde(&["run", "-q", "--api-sock", path.to_str().unwrap(), "hello"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(!path.exists(), "removed at the end");
    let server = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = lde(&["run", "-q", "--api-sock", path.to_str().unwrap(), "hello"]);
    assert!(refusal(&out, 74).contains("is served by another running process"), "{out:?}");
    assert!(path.exists(), "another's socket is left alone");
    drop(server);
}

#[test]
fn a_forbidden_system_call_is_refused() {
    if !kvm_available("a_forbidden_system_call_is_refused") {
        return;
    }
    for thread in ["vcpu", "events"] {
        // The hook makes socket() (41) once the thread's filter is in place.
        let out = lde(&["run", "-q", "--seccomp-check", thread, "hello"]);
        let line = refusal(&out, 74);
        assert!(line.starts_with("lde: error: system call 41 is not on lde's seccomp allow-list"), "{thread}: {line}");
        // Without the filter the same call goes through, and the run goes on.
        let out = lde(&["run", "-q", "--no-seccomp", "--seccomp-check", thread, "hello"]);
        assert_eq!(out.status, Some(0), "{thread}: {out:?}");
        assert!(out.stderr.contains("a forbidden system call went through"), "{thread}: {out:?}");
    }
}
