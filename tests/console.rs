//! The guest's console as scripts see it: plain `\n` line ends in pipes and files, and
//! standard input forwarded from files and /dev/null as from pipes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kvm_available, lde, lde_bin, run_with_stdin, temp};

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

/// A pseudo-terminal of `cols` × `rows`: (master, slave).
#[test]
fn watch_on_a_terminal_uses_the_alternate_screen_and_fits_it() {
    use std::io::Read;
    if !kvm_available("watch_on_a_terminal_uses_the_alternate_screen_and_fits_it") {
        return;
    }
    let (master, slave) = common::pty(Some((80, 24)));
    // Three hellos print six lines at once, so the guest's tail takes a third of the screen
    // from the first redraw on, and the twelve that go on running cannot all be listed.
    let mut args = vec!["run", "--watch", "hello", "hello", "hello", "spin 1500"];
    args.extend(["counter 1200"; 11]);
    let mut child = Command::new(lde_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        // Ends with EIO once the last holder of the terminal's other side has gone.
        let _ = master.read_to_end(&mut seen);
        String::from_utf8_lossy(&seen).into_owned()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("lde run --watch did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let seen = reader.join().unwrap();
    let (enter, leave) = ("\x1b[?1049h", "\x1b[?1049l");
    let (Some(entered), Some(left)) = (seen.find(enter), seen.rfind(leave)) else {
        panic!("the alternate screen was not used: {seen:?}");
    };
    assert!(seen[..entered].contains("lde: host: "), "the host line stays in the scrollback: {seen:?}");
    assert!(seen[left..].contains("lde: processes: 15 started"), "the summary follows: {seen:?}");
    let drawn = &seen[entered..left];
    assert!(!drawn.contains("\x1b[2J"), "no whole-screen clears that fill the scrollback");
    assert!(drawn.contains("PID NAME"), "the table was drawn: {drawn:?}");
    assert!(drawn.contains(" more processes"), "12 processes do not fit in 24 rows with the head: {drawn:?}");
    // Every drawn line fits in 80 columns: the text between cursor moves is one line.
    for piece in drawn.split("\x1b[").filter_map(|p| p.split_once('H').map(|(_, text)| text)) {
        assert!(piece.chars().count() <= 80, "a line wider than the terminal: {piece:?}");
    }
}
