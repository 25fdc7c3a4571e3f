//! Shared helpers for the integration tests: probes for KVM and QEMU, and running `lde` or
//! `scripts/qemu.sh` with a deadline; `gdb.rs` drives GDB against a stub.
//!
//! A test that needs KVM (or QEMU) and finds it missing prints `SKIP <test>: <reason>` and
//! passes, unless `LDE_REQUIRE_KVM=1` (or `LDE_REQUIRE_QEMU=1`) turns the skip into a failure.
#![allow(dead_code)]

pub mod gdb;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Serial output lines with the UART's `\r` removed.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().map(|l| l.trim_end_matches('\r')).collect()
    }

    /// The first line starting with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.lines().into_iter().find(|l| l.starts_with(prefix))
    }
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Says a test was skipped, where the person running the tests sees it.
pub fn skip(test: &str, reason: &str) {
    // Straight to the stderr stream: the test harness captures print! output of passing tests.
    let host = if inside_nested() { " (nested)" } else { "" };
    let _ = writeln!(std::io::stderr(), "SKIP{host} {test}: {reason}");
}

fn skip_or_fail(test: &str, var: &str, reason: &str) -> bool {
    if required(var) {
        panic!("{test}: {reason}, and {var}=1 requires it");
    }
    skip(test, reason);
    false
}

/// Whether KVM is usable here; prints SKIP (or fails under LDE_REQUIRE_KVM=1) when it is not.
pub fn kvm_available(test: &str) -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => skip_or_fail(test, "LDE_REQUIRE_KVM", &format!("/dev/kvm is not usable ({e})")),
    }
}

/// Whether QEMU is installed; prints SKIP (or fails under LDE_REQUIRE_QEMU=1) when it is not.
pub fn qemu_available(test: &str) -> bool {
    if inside_nested() {
        skip(test, "QEMU runs outside the nested host");
        return false;
    }
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || skip_or_fail(test, "LDE_REQUIRE_QEMU", "qemu-system-x86_64 is not installed")
}

/// The `lde` binary under test.
pub fn lde_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lde")
}

/// A path named `name` in a temporary folder of this test binary's own (made on first use).
pub fn temp(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("a test binary knows its own path");
    let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
    let dir = std::env::temp_dir().join(format!("lde-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A new pseudo-terminal: (master, slave), with a window of `size` (columns, rows) if given.
pub fn pty(size: Option<(u16, u16)>) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let window = size.map(|(cols, rows)| libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 });
    let window_ptr = window.as_ref().map_or(std::ptr::null(), |w| w as *const libc::winsize);
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null, and
    // `window_ptr` is null or points at `window`, alive for the call.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), window_ptr) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe { (std::os::fd::OwnedFd::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) }
}

/// The lines of `stream` (a child's stdout or stderr), as they come, from a thread of their own:
/// a test waits for one with a deadline instead of blocking on the pipe.
pub fn lines_of(stream: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command with stdin closed; kills it and fails the test after `deadline`.
pub fn run_with_deadline(cmd: Command, deadline: Duration) -> Output {
    run_with_stdin(cmd, Stdio::null(), deadline)
}

/// Runs a command with `stdin` as its standard input; kills it and fails the test after
/// `deadline`.
pub fn run_with_stdin(mut cmd: Command, stdin: Stdio, deadline: Duration) -> Output {
    let child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    finish_with_deadline(child, &format!("{cmd:?}"), deadline)
}

/// Collects the output of `child` (stdout and stderr piped); kills it and fails the test if it
/// has not ended `deadline` after this call.
pub fn finish_with_deadline(mut child: Child, what: &str, deadline: Duration) -> Output {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        stdout.read_to_end(&mut s).ok();
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        stderr.read_to_end(&mut s).ok();
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = wait_with_deadline(&mut child, what, deadline);
    Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// Waits for `child` to end; kills it and fails the test after `deadline`. Its exit code.
pub fn wait_with_deadline(child: &mut Child, what: &str, deadline: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The one line a refused command wrote on stderr; fails the test unless there is exactly one
/// and nothing panicked.
pub fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0]
}

/// Runs `lde ARGS…`.
pub fn lde(args: &[&str]) -> Output {
    let mut cmd = Command::new(lde_bin());
    cmd.args(args);
    run_with_deadline(cmd, Duration::from_secs(120))
}

/// Runs `scripts/qemu.sh ARGS…` on the `lde` binary under test.
pub fn qemu(args: &[&str]) -> Output {
    qemu_with_args("", args)
}

/// As [`qemu`], with `extra` appended to QEMU's arguments (`LDE_QEMU_ARGS`), e.g. another `-cpu`.
pub fn qemu_with_args(extra: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(repo_root().join("scripts/qemu.sh"));
    cmd.args(args).env("LDE", lde_bin()).env("LDE_QEMU_ARGS", extra);
    run_with_deadline(cmd, Duration::from_secs(300))
}

/// The ways to boot the same kernel and programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// lde on this machine's /dev/kvm (PVM here, hardware KVM elsewhere).
    Kvm,
    /// scripts/qemu.sh: QEMU with TCG, the reference for exact x86 behaviour.
    Qemu,
    /// lde on architectural KVM inside the nested host of scripts/nested.sh (nested SVM under
    /// QEMU TCG), where the test binaries themselves run (LDE_HOST=nested).
    Nested,
}

/// Whether these tests run inside the nested host (scripts/nested.sh sets LDE_HOST=nested).
pub fn inside_nested() -> bool {
    std::env::var("LDE_HOST").is_ok_and(|v| v == "nested")
}

impl Host {
    /// Runs `args` with the kernel's `acct` and `stats:` lines on (`--kernel-stats`), which the
    /// tests read; on `LDE_TEST_CPUS` processors where that is set (scripts/ci.sh runs the attack
    /// and isolation suites again with `LDE_TEST_CPUS=2`) and `args` names none.
    pub fn run(self, args: &[&str]) -> Output {
        let cpus = std::env::var("LDE_TEST_CPUS").ok().filter(|_| !args.contains(&"--cpus"));
        let mut all: Vec<&str> = match self {
            Host::Kvm | Host::Nested => vec!["run", "-q", "--kernel-stats"],
            Host::Qemu => vec!["-q", "--kernel-stats"],
        };
        if let Some(cpus) = cpus.as_deref() {
            all.extend(["--cpus", cpus]);
        }
        all.extend_from_slice(args);
        match self {
            Host::Kvm | Host::Nested => lde(&all),
            Host::Qemu => qemu(&all),
        }
    }

    /// Whether system calls arrive through the recovered paths (PVM) rather than the
    /// architectural ones (hardware KVM, QEMU).
    pub fn recovers_doors(self) -> bool {
        matches!(self, Host::Kvm) && std::path::Path::new("/sys/module/kvm_pvm").exists()
    }
}

/// The hosts available here. Each missing host prints its own `SKIP <test> on <host>: <reason>`
/// line (or fails under LDE_REQUIRE_*), and a test left with no host at all says so too: an
/// empty list never passes in silence.
pub fn hosts(test: &str) -> Vec<Host> {
    let mut hosts = Vec::new();
    // Inside the nested host its /dev/kvm is the KVM, and QEMU runs outside (qemu_available
    // says so in its SKIP line).
    let kvm = if inside_nested() { Host::Nested } else { Host::Kvm };
    if kvm_available(&format!("{test} on {kvm:?}")) {
        hosts.push(kvm);
    }
    if qemu_available(&format!("{test} on {:?}", Host::Qemu)) {
        hosts.push(Host::Qemu);
    }
    if hosts.is_empty() {
        skip(test, "no host to run it on; it checked nothing");
    }
    hosts
}

/// The `key=value` words of the transcript's `stats: <section>` line.
pub fn stats(out: &Output, section: &str) -> HashMap<String, u64> {
    let prefix = format!("stats: {section} ");
    let line = out.line_starting(&prefix).unwrap_or_else(|| panic!("no '{prefix}' line: {out:?}"));
    line[prefix.len()..]
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// No frame stays allocated once every process has ended.
pub fn assert_no_leak(out: &Output) {
    assert_eq!(stats(out, "frames")["in_use"], 0, "{out:?}");
}

/// The `key=value` words of the `acct` line of the process named `name` (the first such).
pub fn acct(out: &Output, name: &str) -> HashMap<String, String> {
    acct_all(out, name).into_iter().next().unwrap_or_else(|| panic!("no acct line for {name}: {out:?}"))
}

/// The `key=value` words of every `acct` line of processes named `name`.
pub fn acct_all(out: &Output, name: &str) -> Vec<HashMap<String, String>> {
    out.lines()
        .into_iter()
        .filter(|l| l.starts_with("acct ") && l.contains(&format!(" name={name} ")))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A number from an acct map.
pub fn num(map: &HashMap<String, String>, key: &str) -> u64 {
    map.get(key).unwrap_or_else(|| panic!("no {key} in {map:?}")).parse().unwrap()
}

/// Runs `lde ARGS…` with `input` on its standard input (then closed), with the deadline of
/// [`lde`].
pub fn lde_with_input(args: &[&str], input: &[u8]) -> Output {
    lde_with_slow_input(args, &[input], Duration::ZERO)
}

/// Runs `lde ARGS…` writing `parts` to its standard input with a pause of `gap` before each
/// (then closing it), with the deadline of [`lde`].
pub fn lde_with_slow_input(args: &[&str], parts: &[&[u8]], gap: Duration) -> Output {
    let mut child = Command::new(lde_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let writer = std::thread::spawn(move || {
        for part in parts {
            std::thread::sleep(gap);
            if stdin.write_all(&part).is_err() {
                return;
            }
        }
    });
    let out = finish_with_deadline(child, &format!("lde {args:?}"), Duration::from_secs(120));
    writer.join().unwrap();
    out
}

/// Fails the test when `report` does not match docs/report.schema.json.
pub fn validate_report(report: &serde_json::Value) {
    let text = std::fs::read_to_string(repo_root().join("docs/report.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(report).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "the report does not match docs/report.schema.json:\n{}", errors.join("\n"));
}

/// `(start, end, cpu)` of the `running` slices of process `pid` in a `--trace` file (each names
/// the processor it ran on).
pub fn running_slices(trace: &serde_json::Value, pid: u64) -> Vec<(f64, f64, u64)> {
    (trace["traceEvents"].as_array().unwrap().iter())
        .filter(|e| e["ph"] == "X" && e["pid"].as_u64() == Some(pid) && e["name"] == "running")
        .map(|e| {
            let ts = e["ts"].as_f64().unwrap();
            (ts, ts + e["dur"].as_f64().unwrap(), e["args"]["cpu"].as_u64().expect("a running slice names its cpu"))
        })
        .collect()
}
