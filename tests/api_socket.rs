//! The `--api-sock` server never holds lde's event loop: clients that trickle their request a
//! byte at a time (more of them than lde serves at once) delay neither stdin forwarding, nor
//! another client's answer, nor SIGTERM, nor `--timeout`.
//!
//! The slow clients keep at it for as long as the test lets them (up to [`STALL`]); each bound
//! lde must meet is far below that, and lde's own part of it is the time from the event (the
//! signal sent, the timeout set) to lde's end, so a slow or loaded host cannot fail a correct
//! lde, while an lde that served a client synchronously would wait out the whole stall.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{kvm_available, lde_bin};

/// How long the slow clients go on if nothing stops them.
const STALL: Duration = Duration::from_secs(300);
/// More slow clients than lde serves at once (`observe::api::MAX_CLIENTS` is 8).
const SLOW_CLIENTS: usize = 12;
/// How long lde may take to act on an event (a signal, a line of input) while they stall: a
/// tiny fraction of [`STALL`], and minutes more than a correct lde needs even on a loaded host.
const BOUND: Duration = Duration::from_secs(60);

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lde-api-{}-{name}.sock", std::process::id()))
}

/// Clients that connect and send one byte every 150 ms, reconnecting whenever lde closes on
/// them, until dropped.
struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Bytes sent by all of them.
    sent: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    fn start(sock: &Path) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let threads = (0..SLOW_CLIENTS)
            .map(|_| {
                let (sock, stop, sent) = (sock.to_owned(), stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < STALL {
                        let Ok(mut stream) = UnixStream::connect(&sock) else {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        };
                        for &b in b"GET / HTTP/1.1\r\nHost: localhost\r\n".iter().cycle() {
                            if stop.load(Ordering::Relaxed)
                                || started.elapsed() >= STALL
                                || stream.write_all(&[b]).is_err()
                            {
                                break;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(150));
                        }
                    }
                })
            })
            .collect();
        SlowClients { stop, sent, threads }
    }

    /// Waits until they have sent `bytes` in all: they are connected and trickling.
    fn wait_until_sent(&self, bytes: u64) {
        let start = Instant::now();
        while self.sent.load(Ordering::Relaxed) < bytes {
            assert!(start.elapsed() < BOUND, "the slow clients could not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).for_each(|t| t.join().unwrap());
    }
}

/// `lde run ARGS…` with every stream piped; its stdout lines arrive on the receiver.
fn spawn_lde(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(lde_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = common::lines_of(child.stdout.take().unwrap());
    (child, rx)
}

fn wait_for_socket(sock: &Path, child: &mut Child) {
    let start = Instant::now();
    while !sock.exists() {
        assert!(child.try_wait().unwrap().is_none(), "lde ended before it listened on {}", sock.display());
        assert!(start.elapsed() < BOUND, "lde never listened on {}", sock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a stdout line containing `text`.
fn wait_for_line(lines: &mpsc::Receiver<String>, text: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return,
            Ok(_) => {}
            Err(e) => panic!("no line with {text:?} within {BOUND:?} ({e})"),
        }
    }
}

/// Waits for lde to end, at most [`BOUND`]; its exit code and stderr.
fn wait_for_end(mut child: Child, what: &str) -> (Option<i32>, String) {
    let status = common::wait_with_deadline(&mut child, what, BOUND);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn slow_api_clients_delay_neither_stdin_nor_other_clients_nor_sigterm() {
    if !kvm_available("slow_api_clients_delay_neither_stdin_nor_other_clients_nor_sigterm") {
        return;
    }
    let sock = socket_path("sigterm");
    let (mut lde, lines) = spawn_lde(&["run", "-q", "--api-sock", sock.to_str().unwrap(), "cat"]);
    wait_for_socket(&sock, &mut lde);
    let slow = SlowClients::start(&sock);
    slow.wait_until_sent(3 * SLOW_CLIENTS as u64);

    // Stdin still reaches the guest, which echoes it.
    let mut stdin = lde.stdin.take().unwrap();
    stdin.write_all(b"ping through the event loop\n").unwrap();
    wait_for_line(&lines, "ping through the event loop");

    // Another client still gets its answer.
    let mut stats = Command::new(lde_bin());
    stats.args(["stats", "--timeout", "60", sock.to_str().unwrap()]);
    let out = common::run_with_deadline(stats, BOUND + Duration::from_secs(10));
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(report["outcome"].is_null(), "the run goes on: {report}");

    // SIGTERM takes effect while the slow clients keep trickling.
    // SAFETY: sends SIGTERM to the child we spawned and still own.
    unsafe { libc::kill(lde.id() as i32, libc::SIGTERM) };
    let (status, stderr) = wait_for_end(lde, "lde run --api-sock with slow clients, after SIGTERM");
    drop(slow);
    assert_eq!(status, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by signal"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!sock.exists(), "lde removes its socket when it ends");
}

#[test]
fn slow_api_clients_do_not_delay_the_timeout() {
    if !kvm_available("slow_api_clients_do_not_delay_the_timeout") {
        return;
    }
    let sock = socket_path("timeout");
    // The socket is bound before the guest boots, so the clients are trickling well before the
    // timeout on any host; on one so loaded that they are not, the test checks less but still
    // cannot fail a correct lde.
    let (mut lde, _lines) =
        spawn_lde(&["run", "-q", "--timeout", "10", "--api-sock", sock.to_str().unwrap(), "spin 0"]);
    let start = Instant::now();
    wait_for_socket(&sock, &mut lde);
    let slow = SlowClients::start(&sock);
    let (status, stderr) = wait_for_end(lde, "lde run --timeout 10 with slow clients");
    let sent = slow.sent.load(Ordering::Relaxed);
    drop(slow);
    assert_eq!(status, Some(124), "{stderr}");
    assert!(stderr.contains("lde: timeout"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!(
        "lde ended by its timeout {:.1} s after it started; the slow clients sent {sent} bytes",
        start.elapsed().as_secs_f64()
    );
}
