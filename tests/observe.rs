//! Seeing and measuring: the host's view of the kernel's counters (report, live API, watch,
//! timeline) agrees with the kernel's own accounting.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kvm_available, lde, lde_bin, stats, temp, validate_report as validate, Output};
use serde_json::Value;

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// getpid calls per door in the report's run.
const CALLS: u64 = 300;
/// pingpong round trips in the report's run.
const ROUNDS: u64 = 40;

#[test]
fn the_report_agrees_with_the_kernel_and_its_schema() {
    if !kvm_available("the_report_agrees_with_the_kernel_and_its_schema") {
        return;
    }
    let path = temp("report.json");
    let calls = format!("calls {CALLS}");
    let pingpong = format!("pingpong {ROUNDS}");
    let out = lde(&[
        "run",
        "--kernel-stats",
        "--report",
        path.to_str().unwrap(),
        &calls,
        "bad-ud2",
        "bad-kread",
        &pingpong,
        "bad-cli",
    ]);
    assert_eq!(out.status, Some(1), "three processes were killed: {out:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    validate(&report);

    assert_eq!(report["outcome"]["kind"], "exited");
    assert_eq!(report["outcome"]["exit_code"], 1);
    let g = &report["guest"];
    doors_and_calls_agree(g, &out);
    scheduler_and_traps_agree(g, &out);
    processes_agree(g, &out);
    events_and_frames_agree(g);
    vm_exits_agree(&report, &out);
    std::fs::remove_file(&path).ok();
}

/// The doors and the calls, exactly as the kernel printed them.
fn doors_and_calls_agree(g: &Value, out: &Output) {
    let doors = stats(out, "doors");
    assert_eq!(count(&g["doors"]["syscall_recovered"]), doors["syscall.recovered"]);
    assert_eq!(count(&g["doors"]["syscall_architectural"]), doors["syscall.arch"]);
    assert_eq!(count(&g["doors"]["int80_recovered"]), doors["int80.recovered"]);
    assert_eq!(count(&g["doors"]["int80_architectural"]), doors["int80.arch"]);
    assert_eq!(count(&g["doors"]["int80_recovered"]) + count(&g["doors"]["int80_architectural"]), CALLS);
    let calls = stats(out, "calls");
    for (name, n) in &calls {
        let reported = g["syscalls"].get(name).map_or(0, count);
        assert_eq!(reported, *n, "syscall {name}");
    }
    assert_eq!(count(&g["syscalls"]["getpid"]), 2 * CALLS + 1 + 2, "calls' and both pingpongs' getpid");
    assert_eq!(count(&g["syscalls"]["yield"]), 2 * ROUNDS);
}

/// The scheduler's counts, and every trap vector the kernel counted.
fn scheduler_and_traps_agree(g: &Value, out: &Output) {
    let sched = stats(out, "sched");
    assert_eq!(count(&g["scheduler"]["kills"]), 3);
    assert_eq!(count(&g["scheduler"]["kills"]), sched["kills"]);
    assert_eq!(count(&g["scheduler"]["switches"]), sched["switches"]);
    assert_eq!(count(&g["timer"]["ticks"]), sched["ticks"]);
    let traps = stats(out, "traps");
    for t in g["traps"].as_array().unwrap() {
        let key = format!("{}:{}", t["vector"], t["name"].as_str().unwrap());
        assert_eq!(count(&t["count"]), traps[&key], "{key}");
    }
}

/// Every process, with its end as the kernel printed it.
fn processes_agree(g: &Value, out: &Output) {
    let procs = g["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 6, "calls, 3 killed, 2 pingpongs");
    for p in procs {
        let (pid, name) = (p["pid"].as_u64().unwrap(), p["name"].as_str().unwrap());
        match p["end"].as_str() {
            Some("killed") => {
                let line = format!(
                    "killed pid={pid} name={name} trap={} rip=0x{:x}",
                    p["trap"].as_str().unwrap(),
                    count(&p["rip"])
                );
                assert!(out.lines().contains(&line.as_str()), "{line} in {out:?}");
                assert_eq!(count(&p["faults"]), 1);
            }
            Some("exited") => {
                let line = format!("exit pid={pid} name={name} status={}", p["status"]);
                assert!(out.lines().contains(&line.as_str()), "{line}");
            }
            other => panic!("process {pid} did not end: {other:?}"),
        }
    }
    let yields: u64 = procs.iter().filter(|p| p["name"] == "pingpong").map(|p| count(&p["voluntary_switches"])).sum();
    assert_eq!(yields, 2 * ROUNDS);
}

/// No event lost, all of them recorded, no frame left in use.
fn events_and_frames_agree(g: &Value) {
    assert_eq!(count(&g["events"]["lost"]), 0);
    assert!(count(&g["events"]["written"]) > 2 * ROUNDS, "switches, ticks, calls were logged");
    assert_eq!(count(&g["events"]["written"]), count(&g["events"]["recorded"]));
    assert_eq!(count(&g["frames_in_use"]), 0);
}

/// Console output costs one port write a line (the console port's doorbell), not one a byte;
/// the two more are the UART's interrupt enable (for input) and the shutdown port.
fn vm_exits_agree(report: &Value, out: &Output) {
    let exits = &report["vm_exits"]["handled_by_lde"];
    let lines = out.stdout.lines().count() as u64;
    assert!(count(&exits["io_out"]) <= lines + 2, "{exits} for {lines} lines");
    let handled: u64 = ["io_in", "io_out", "mmio", "other"].iter().map(|k| count(&exits[*k])).sum();
    assert_eq!(count(&report["vm_exits"]["total"]), handled);
}

#[test]
fn lde_stats_reads_counters_that_grow() {
    if !kvm_available("lde_stats_reads_counters_that_grow") {
        return;
    }
    let sock = temp("api.sock");
    let mut run = Command::new(lde_bin())
        .args(["run", "-q", "--api-sock", sock.to_str().unwrap(), "counter 3000", "pingpong 100000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = || -> Value {
        let mut stats = Command::new(lde_bin());
        stats.args(["stats", sock.to_str().unwrap()]);
        let out = common::run_with_deadline(stats, Duration::from_secs(30));
        assert_eq!(out.status, Some(0), "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let ticks = |v: &Value| count(&v["guest"]["timer"]["ticks"]);
    let yields = |v: &Value| v["guest"]["syscalls"].get("yield").map_or(0, count);
    // Wait for the socket, then for counters that moved since a first reading (the guest's
    // timer has started and pingpong yields): events, whatever the host's speed; the deadline
    // only keeps a broken lde from hanging the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let waiting = |what: &str| {
        assert!(std::time::Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    while !sock.exists() {
        waiting("the API socket");
    }
    let mut first = read();
    // The guest's counters are null until lde has read the stats page once.
    while first["guest"].is_null() || ticks(&first) == 0 || first["timing"]["banner_ms"].is_null() {
        waiting("a first tick");
        first = read();
    }
    let mut second = read();
    while ticks(&second) <= ticks(&first) || yields(&second) <= yields(&first) {
        waiting("more ticks and yields");
        second = read();
    }
    // What `curl --unix-socket PATH http://localhost/` sends.
    let http = {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    // SAFETY: sends SIGTERM to the child we spawned and still own.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let status = common::wait_with_deadline(&mut run, "lde run --api-sock", Duration::from_secs(30));
    assert_eq!(status, Some(130), "SIGTERM stops lde cleanly");
    validate(&first);
    assert!(first["outcome"].is_null(), "still running");
    let (head, body) = http.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP response: {http:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Type: application/json"), "{head}");
    validate(&serde_json::from_str(body).unwrap());
    assert!(first["timing"]["banner_ms"].as_f64().is_some_and(|ms| ms > 0.0), "the banner time: {first}");
    assert!(ticks(&second) > ticks(&first), "ticks {} then {}", ticks(&first), ticks(&second));
    assert!(yields(&second) > yields(&first), "yields {} then {}", yields(&first), yields(&second));
    assert!(!sock.exists(), "lde removes its socket when it ends");
}

#[test]
fn an_api_socket_that_exists_is_refused() {
    if !kvm_available("an_api_socket_that_exists_is_refused") {
        return;
    }
    let path = temp("taken.sock");
    std::fs::write(&path, b"").unwrap();
    let out = lde(&["run", "--api-sock", path.to_str().unwrap(), "hello"]);
    assert_eq!(out.status, Some(74), "{out:?}");
    let expected = "already exists and is not a socket: remove it or choose another --api-sock path";
    assert!(out.stderr.contains(expected), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), b"", "a file that is not a socket is left alone");
    std::fs::remove_file(&path).ok();
    let out = lde(&["stats", path.to_str().unwrap()]);
    assert_eq!(out.status, Some(74), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn the_timeline_has_one_lane_per_process() {
    if !kvm_available("the_timeline_has_one_lane_per_process") {
        return;
    }
    let path = temp("timeline.svg");
    let out = lde(&[
        "run",
        "-q",
        "spin 500",
        "counter 500",
        "pingpong 30",
        "bad-ud2",
        "hello",
        "--timeline",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status, Some(1), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the timeline is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let lanes: Vec<u64> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .map(|n| n.attribute("data-pid").unwrap().parse().unwrap())
        .collect();
    assert_eq!(lanes, vec![1, 2, 3, 4, 5, 6], "spin, counter, pingpong, bad-ud2, hello, pingpong's partner");
    let slices = doc.descendants().filter(|n| n.attribute("class") == Some("slice")).count();
    assert!(slices >= 6, "every process ran at least once: {slices}");
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("fault")).count(), 1);
    assert!(doc.descendants().any(|n| n.attribute("class") == Some("kernel")));
    // No process is drawn running after its exit or its kill.
    let num = |n: roxmltree::Node, a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
    for lane in doc.descendants().filter(|n| n.attribute("class") == Some("lane")) {
        let end = lane.descendants().find(|n| matches!(n.attribute("class"), Some("exit" | "fault"))).unwrap();
        let end_x = num(end, "x") + num(end, "width") / 2.0;
        for slice in lane.descendants().filter(|n| n.attribute("class") == Some("slice")) {
            let right = num(slice, "x") + num(slice, "width");
            assert!(right <= end_x + 0.7, "pid {:?} drawn running past its end", lane.attribute("data-pid"));
        }
    }
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
    assert!(texts.iter().any(|t| t.starts_with("lde run -q 'spin 500' 'counter 500'")), "the title: {texts:?}");
    assert!(texts.contains(&"guest time (TSC), from the first event"), "{texts:?}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn watch_prints_status_lines_when_piped() {
    if !kvm_available("watch_prints_status_lines_when_piped") {
        return;
    }
    let out: Output = lde(&["run", "-q", "--watch", "spin 2500"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let status: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("lde: watch ")).collect();
    assert!(status.len() >= 2, "{}", out.stderr);
    assert!(status.iter().all(|l| l.contains(" ticks=") && l.contains(" switches=")), "{status:?}");
    assert!(out.stdout.contains("spin: done"), "the guest's output still reaches stdout: {out:?}");
}

#[test]
fn an_unwritable_report_path_is_refused_before_the_run() {
    let out = lde(&["run", "--report", "/nonexistent/dir/r.json", "spin 5000"]);
    assert_eq!(out.status, Some(74), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("lde: error: cannot write the report /nonexistent/dir/r.json: "), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "the guest never ran: {out:?}");
}
