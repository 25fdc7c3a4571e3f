//! The guest's console as scripts see it: plain `\n` line ends in pipes and files, and
//! standard input forwarded from files and /dev/null as from pipes.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kvm_available, lde, lde_bin, run_with_stdin};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lde-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn lde_with_stdin(args: &[&str], stdin: Stdio) -> common::Output {
    let mut cmd = Command::new(lde_bin());
    cmd.args(args);
    run_with_stdin(cmd, stdin, Duration::from_secs(120))
}

#[test]
fn a_pipe_gets_lf_line_ends() {
    if !kvm_available("a_pipe_gets_lf_line_ends") {
        return;
    }
    let out = lde(&["run", "-q", "hello"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(!out.stdout.contains('\r'), "no \\r in piped output: {:?}", out.stdout);
    assert!(out.stdout.lines().any(|l| l == "exit pid=1 name=hello status=0"), "{out:?}");
}

#[test]
fn a_file_on_stdin_reaches_the_guest() {
    if !kvm_available("a_file_on_stdin_reaches_the_guest") {
        return;
    }
    // More than the UART's 64-byte FIFO, so that it is read in several turns.
    let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
    let path = temp("in.txt");
    std::fs::write(&path, &text).unwrap();
    let out = lde_with_stdin(&["run", "-q", "cat"], Stdio::from(std::fs::File::open(&path).unwrap()));
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains(&text), "the file's text came back: {out:?}");
    let end = format!("cat: {} bytes, end of input", text.len());
    assert!(out.stdout.lines().any(|l| l == end), "{end} in {out:?}");
    assert_eq!(out.stderr, "", "nothing to warn about");
}

#[test]
fn dev_null_on_stdin_is_an_empty_input() {
    if !kvm_available("dev_null_on_stdin_is_an_empty_input") {
        return;
    }
    let out = lde_with_stdin(&["run", "-q", "cat"], Stdio::null());
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "cat: 0 bytes, end of input"), "{out:?}");
    assert_eq!(out.stderr, "", "nothing to warn about");
}

#[test]
fn lde_speaks_on_stderr_and_the_guest_on_stdout() {
    if !kvm_available("lde_speaks_on_stderr_and_the_guest_on_stdout") {
        return;
    }
    let out = lde(&["run", "hello", "bad-cli"]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stderr.lines().all(|l| l.starts_with("lde: ")), "every stderr line is lde's: {}", out.stderr);
    assert!(out.stderr.contains("lde: processes: 2 started, 1 killed"), "{}", out.stderr);
    assert!(out.stdout.lines().all(|l| !l.starts_with("lde: ")), "stdout is the guest's: {}", out.stdout);
}
