//! A kernel's stats page is its own to write, and lde boots any `--kernel`: a page of `u64::MAX`
//! counters and rings whose counts wrap past `u64::MAX` (the `hostile-stats` test hook) must
//! not make lde panic or print a wrapped figure, in any output: the summary, `--watch`'s status
//! lines, `lde stats`, `--report` and `--timeline`. Sums of its counters saturate; lde says
//! the counters are implausible, and that the rings went backwards when it saw them do so.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{kvm_available, lde_bin};
use lde_abi::cmdline::{HOSTILE_STATS_DONE, TEST_HOSTILE_STATS, TEST_KEY};
use serde_json::Value;

const MAX: u64 = u64::MAX;
/// Generous: every wait here is for an event (a line), never for a time.
const DEADLINE: Duration = Duration::from_secs(120);

/// Waits for a line containing `text` from `lines`.
fn wait_for(lines: &mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {text:?} within {DEADLINE:?} ({e})"),
        }
    }
}

fn lines_of(stream: impl std::io::Read + Send + 'static, copy: mpsc::Sender<String>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = copy.send(line.clone());
            let _ = tx.send(line);
        }
    });
    rx
}

/// The guest part of a report (from `--report` or `lde stats`): the page's figures as the
/// kernel wrote them, and the rings' counts either before the wrap was seen or after it.
fn check_guest(g: &Value, went_back: bool) {
    assert_eq!(g["doors"]["syscall_architectural"].as_u64(), Some(MAX), "{g}");
    assert_eq!(g["doors"]["int80_recovered"].as_u64(), Some(MAX), "{g}");
    assert_eq!(g["timer"]["ticks"].as_u64(), Some(MAX), "{g}");
    assert_eq!(g["scheduler"]["switches"].as_u64(), Some(MAX), "{g}");
    assert_eq!(g["scheduler"]["tick_cycles_mean"].as_u64(), Some(1), "{g}");
    assert!(g["traps"].as_array().unwrap().iter().all(|t| t["count"].as_u64() == Some(MAX)), "{g}");
    let hostile = g["processes"].as_array().unwrap().iter().find(|p| p["pid"] == 1).expect("pid 1");
    assert_eq!((hostile["name"].as_str(), hostile["ticks"].as_u64()), (Some("hostile"), Some(MAX)), "{g}");
    let events = &g["events"];
    let (written, recorded, lost) =
        (events["written"].as_u64().unwrap(), events["recorded"].as_u64().unwrap(), events["lost"].as_u64().unwrap());
    if written == MAX {
        // Seen before the wrap: the three entries the kernel wrote whole, the rest lost.
        assert_eq!((recorded, lost), (3, MAX - 3), "{g}");
    } else {
        // Seen only after it (a host too loaded to poll during the hook's hold).
        assert!(!went_back, "{g}");
        assert_eq!((written, recorded, lost), (3, 3, 0), "{g}");
    }
}

#[test]
fn a_page_of_maximal_counters_and_wrapping_rings_neither_panics_nor_wraps() {
    if !kvm_available("a_page_of_maximal_counters_and_wrapping_rings_neither_panics_nor_wraps") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("lde-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sock, report, timeline) = (dir.join("api.sock"), dir.join("report.json"), dir.join("timeline.svg"));
    let hook = format!("{TEST_KEY}={TEST_HOSTILE_STATS}");
    let mut lde = Command::new(lde_bin())
        .args(["run", "--watch", "--cmdline", &hook, "--api-sock", sock.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap(), "--timeline", timeline.to_str().unwrap(), "hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (all_tx, all_rx) = mpsc::channel();
    let stdout = lines_of(lde.stdout.take().unwrap(), all_tx.clone());
    let stderr = lines_of(lde.stderr.take().unwrap(), all_tx);
    wait_for(&stdout, HOSTILE_STATS_DONE);
    // A status line of --watch from after the page was written (they come every second).
    wait_for(&stderr, "lde: watch");
    let status = wait_for(&stderr, "lde: watch");
    assert!(status.contains(&format!("ticks={MAX} switches={MAX} syscalls={MAX} kills={MAX}")), "{status}");

    let mut stats = Command::new(lde_bin());
    stats.args(["stats", "--timeout", "60", sock.to_str().unwrap()]);
    let live = common::run_with_deadline(stats, DEADLINE);
    assert_eq!(live.status, Some(0), "{live:?}");
    let live: Value = serde_json::from_str(&live.stdout).unwrap();
    common::validate_report(&live);

    // SAFETY: sends SIGTERM to the child we spawned and still own.
    unsafe { libc::kill(lde.id() as i32, libc::SIGTERM) };
    let code = common::wait_with_deadline(&mut lde, "lde run with a hostile stats page", DEADLINE);
    let transcript: Vec<String> = std::iter::from_fn(|| all_rx.recv_timeout(Duration::from_secs(5)).ok()).collect();
    let text = transcript.join("\n");
    assert_eq!(code, Some(130), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let went_back = text.contains("went backwards");
    check_guest(&live["guest"], false);

    // The summary: saturated sums, and the warnings.
    let traps = transcript.iter().find(|l| l.starts_with("lde: traps: ")).unwrap_or_else(|| panic!("{text}"));
    for part in [format!("syscall {MAX} (mixed)"), format!("int 0x80 {MAX} (mixed)"), format!("timer {MAX}")] {
        assert!(traps.contains(&part), "{traps}");
    }
    assert!(text.contains("lde: warning: the kernel's counters are implausible (ticks, syscall_arch,"), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    common::validate_report(&report);
    check_guest(&report["guest"], went_back);
    assert_eq!(report["guest"]["events"]["written"].as_u64() == Some(MAX), went_back, "{text}");

    let svg = std::fs::read_to_string(&timeline).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the timeline is well-formed SVG");
    assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.trim().starts_with("3 events"))), "{svg}");
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    std::fs::remove_dir_all(&dir).ok();
}
