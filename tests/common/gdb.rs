//! GDB against a stub, for tests/gdb.rs: lde's (`lde run --gdb`) or QEMU's (`scripts/qemu.sh
//! --gdb`), started with the programs to run and driven by GDB in batch mode with lde's GDB
//! commands (scripts/lde.gdb) and the debug files of `lde export`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{lde, lde_bin, repo_root, Host, Output};

/// Whether GDB is installed; prints SKIP (or fails where CI requires it) when it is not.
pub fn gdb_available(test: &str) -> bool {
    let found = Command::new("gdb").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let required = ["LDE_REQUIRE_KVM", "LDE_REQUIRE_QEMU"].iter().any(|v| std::env::var(v).is_ok_and(|v| v == "1"));
    if !found && required {
        panic!("{test}: gdb is not installed (apt-get install gdb), and CI requires it");
    }
    if !found {
        super::skip(test, "gdb is not installed");
    }
    found
}

/// `lde export` of `programs` into a fresh directory.
pub fn export(programs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["export", "--dir", dir.path().to_str().unwrap()];
    args.extend_from_slice(programs);
    let out = lde(&args);
    assert_eq!(out.status, Some(0), "{out:?}");
    dir
}

/// The addresses of `sysretq` and `iretq` in the kernel's `syscall_return`, where system calls
/// leave.
pub fn kernel_returns(kernel: &Path) -> (u64, u64) {
    let out = Command::new("objdump").args(["-d", "--no-show-raw-insn"]).arg(kernel).output().expect("objdump runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let body = text.split("<syscall_return>:").nth(1).expect("syscall_return in the kernel");
    let find = |mnemonic: &str| {
        let line = body.lines().find(|l| l.split_whitespace().nth(1) == Some(mnemonic)).expect(mnemonic);
        u64::from_str_radix(line.trim().split(':').next().unwrap(), 16).unwrap()
    };
    (find("sysretq"), find("iretq"))
}

/// Starts the stub (lde, or QEMU through scripts/qemu.sh) with `programs`; its port once it waits.
pub fn start_stub(host: Host, programs: &[&str]) -> (Child, u16, mpsc::Receiver<String>) {
    start_stub_with(host, programs, &[])
}

/// [`start_stub`] with more of lde's options (`--cpus 2`).
pub fn start_stub_with(host: Host, programs: &[&str], options: &[&str]) -> (Child, u16, mpsc::Receiver<String>) {
    let mut cmd = match host {
        Host::Kvm | Host::Nested => {
            let mut cmd = Command::new(lde_bin());
            cmd.args(["run", "--timeout", "240", "--gdb=127.0.0.1:0"]).args(options);
            cmd
        }
        Host::Qemu => {
            // QEMU takes a port number: find a free one (nothing else here takes it meanwhile).
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut cmd = Command::new(repo_root().join("scripts/qemu.sh"));
            cmd.env("LDE", lde_bin()).args(["--timeout", "240", &format!("--gdb={port}")]);
            cmd
        }
    };
    let mut child = cmd
        .args(programs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stub starts");
    // The stderr lines go to a channel: the first with the port, then the rest for the checks.
    let rx = super::lines_of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            child.kill().ok();
            child.wait().ok();
            panic!("no port line: {seen:?}");
        };
        if let Some(rest) = line.split("target remote 127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let port = digits.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            return (child, port, rx);
        }
        seen.push(line);
    }
}

/// Runs GDB in batch mode on `kernel.debug` with lde's commands and `script` against the stub
/// on `port`; GDB's output.
pub fn run_gdb(dir: &Path, port: u16, script: &str) -> Output {
    let file = dir.join("session.gdb");
    std::fs::write(&file, format!("set tcp connect-timeout 60\ntarget remote 127.0.0.1:{port}\n{script}")).unwrap();
    let mut cmd = Command::new("gdb");
    cmd.args(["-q", "-batch", "-nx", "-x"])
        .arg(repo_root().join("scripts/lde.gdb"))
        .arg("-x")
        .arg(&file)
        .arg(dir.join("kernel.debug"));
    super::run_with_deadline(cmd, Duration::from_secs(240))
}

/// The stub's end: its exit code, stdout, and stderr (from the channel).
pub fn finish(mut child: Child, rx: mpsc::Receiver<String>) -> Output {
    let stdout = child.stdout.take();
    let status = super::wait_with_deadline(&mut child, "the stub", Duration::from_secs(240));
    let mut text = String::new();
    if let Some(mut out) = stdout {
        std::io::Read::read_to_string(&mut out, &mut text).ok();
    }
    Output { status, stdout: text, stderr: rx.try_iter().collect::<Vec<_>>().join("\n") }
}

/// A hex number after `key` in `text`.
pub fn hex_after(text: &str, key: &str) -> u64 {
    let rest = text.split(key).nth(1).unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    let word = rest.split_whitespace().next().unwrap().trim_end_matches([',', ':']);
    u64::from_str_radix(word.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{word}: {e}"))
}

/// lde on this machine's /dev/kvm: the nested host's architectural KVM inside scripts/nested.sh.
pub fn kvm_host() -> Host {
    match super::inside_nested() {
        true => Host::Nested,
        false => Host::Kvm,
    }
}

/// Runs `script` against lde's stub with `hello`; GDB's output and the stub's end.
pub fn kvm_script(script: &str) -> (String, Output) {
    let dir = export(&["hello"]);
    let (child, port, rx) = start_stub(kvm_host(), &["hello"]);
    let session = run_gdb(dir.path(), port, script);
    let stub = finish(child, rx);
    (format!("{}{}", session.stdout, session.stderr), stub)
}
