//! Time sharing: the timer takes the CPU back, the scheduler shares it fairly, processes yield,
//! sleep and block on input, and cooperative mode (no timer) behaves as it must.
//!
//! Ordering and counting scenarios run under KVM and QEMU TCG; those that compare amounts of
//! CPU time run under KVM only (TCG's speed varies too much to compare).

mod common;

use std::time::Duration;

use common::{acct, acct_all, hosts, kvm_available, lde, lde_with_slow_input, num, stats, Host, Output};

/// Tests that compare amounts of CPU time hold this exclusively, the others share it: a guest
/// whose vCPU thread competes for the host's CPUs with other guests loses timer ticks (the host
/// coalesces the LAPIC timer's interrupts while the vCPU is not running).
static CPU: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|e| e.into_inner())
}

/// Index of the first line starting with `prefix`.
fn line_index(out: &Output, prefix: &str) -> usize {
    out.lines().iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line '{prefix}': {out:?}"))
}

#[test]
fn the_timer_lets_hello_finish_before_a_spinner() {
    let _cpu = shared();
    for host in hosts("the_timer_lets_hello_finish_before_a_spinner") {
        let out = host.run(&["spin 3000", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let hello = line_index(&out, "exit pid=2 name=hello status=0");
        let spin = line_index(&out, "exit pid=1 name=spin status=0");
        assert!(hello < spin, "{host:?}: hello must end long before spin: {out:?}");
        // The spinner never gave the CPU up by itself: each time it lost it, it was preempted.
        let spin = acct(&out, "spin");
        assert!(num(&spin, "involuntary") >= 1, "{host:?}: {spin:?}");
        assert_eq!(num(&spin, "voluntary"), 0, "{host:?}: {spin:?}");
    }
}

#[test]
fn the_spinner_is_preempted_once_per_slice() {
    let _cpu = alone();
    for host in hosts("the_spinner_is_preempted_once_per_slice") {
        for slice in ["1", "3"] {
            let out = host.run(&["--slice", slice, "spin 1500", "spin 1500"]);
            assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
            let slice: u64 = slice.parse().unwrap();
            for spin in acct_all(&out, "spin") {
                // While both spin, every `slice` ticks charged end in a preemption.
                let (ticks, involuntary) = (num(&spin, "ticks"), num(&spin, "involuntary"));
                assert!(involuntary + 2 >= ticks / slice / 2, "{host:?} slice {slice}: {spin:?}");
                assert!(involuntary <= ticks / slice + 1, "{host:?} slice {slice}: {spin:?}");
            }
        }
    }
}

#[test]
fn without_a_timer_hello_waits_for_the_spinner() {
    let _cpu = shared();
    for host in hosts("without_a_timer_hello_waits_for_the_spinner") {
        let out = host.run(&["--timer-hz", "0", "spin 1000", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let hello = line_index(&out, "hello from ring 3 (pid 2)");
        let spin = line_index(&out, "exit pid=1 name=spin status=0");
        assert!(spin < hello, "{host:?}: cooperative: hello runs only after spin: {out:?}");
        assert_eq!(stats(&out, "sched")["ticks"], 0, "{host:?}");
        assert_eq!(num(&acct(&out, "spin"), "involuntary"), 0, "{host:?}");
    }
}

#[test]
fn a_forever_spinner_without_timer_ends_on_the_timeout() {
    let _cpu = shared();
    if !kvm_available("a_forever_spinner_without_timer_ends_on_the_timeout") {
        return;
    }
    let out = lde(&["run", "--timer-hz", "0", "spin 0", "hello", "--timeout", "3"]);
    assert_eq!(out.status, Some(124), "{out:?}");
    let report = out.stderr.lines().find(|l| l.starts_with("lde: timeout: ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(report.contains("the CPU was held by pid 1 (spin) in ring 3 at rip 0x"), "{report}");
    assert!(report.contains("no timer interrupt was armed (--timer-hz 0)"), "{report}");
    assert!(!out.stdout.contains("hello from ring 3"), "hello never ran: {out:?}");
}

#[test]
fn three_counters_share_the_cpu_fairly() {
    let _cpu = alone();
    if !kvm_available("three_counters_share_the_cpu_fairly") {
        return;
    }
    let out = lde(&["run", "-q", "--kernel-stats", "counter 3000", "counter 3000", "counter 3000"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let ticks: Vec<u64> = acct_all(&out, "counter").iter().map(|a| num(a, "ticks")).collect();
    assert_eq!(ticks.len(), 3, "{out:?}");
    let total: u64 = ticks.iter().sum();
    // Enough ticks for a share to mean something (however many the host made the guest miss).
    let (all, missed, periods) = ticks_missed_periods(&out);
    assert!(all >= 30, "{all} ticks, {missed} missed, {periods} periods: {ticks:?}");
    for t in &ticks {
        // Within 10% of a third; and never off by more than the two ticks of round-robin's
        // granularity (one round may be cut short at the end, one slice be a tick longer at
        // the start).
        let off = t.abs_diff(total / 3);
        assert!(off <= (total / 30).max(2), "{t} of {ticks:?} is not within 10% of a third");
    }
}

#[test]
fn pingpong_round_trips_are_voluntary_switches() {
    let _cpu = shared();
    const N: u64 = 200;
    for host in hosts("pingpong_round_trips_are_voluntary_switches") {
        for timer in ["50", "0"] {
            let arg = format!("pingpong {N}");
            let out = host.run(&["--timer-hz", timer, &arg]);
            assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
            let players = acct_all(&out, "pingpong");
            assert_eq!(players.len(), 2, "{host:?}: {out:?}");
            let voluntary: u64 = players.iter().map(|a| num(a, "voluntary")).sum();
            assert_eq!(voluntary, 2 * N, "{host:?} timer {timer}: {players:?}");
            assert_eq!(stats(&out, "calls")["yield"], 2 * N, "{host:?}");
        }
    }
}

#[test]
fn sleepers_never_wake_early() {
    let _cpu = shared();
    for host in hosts("sleepers_never_wake_early") {
        for timer in ["50", "0"] {
            let out = host.run(&["--timer-hz", timer, "sleeper 10 15", "sleeper 7 3", "spin 300"]);
            assert_eq!(out.status, Some(0), "{host:?} timer {timer}: {out:?}");
            let lines: Vec<&str> = out.lines().into_iter().filter(|l| l.starts_with("sleeper: ")).collect();
            assert_eq!(lines.len(), 2, "{host:?}: {out:?}");
            assert!(lines.iter().all(|l| l.contains(" 0 early,")), "{host:?} timer {timer}: {lines:?}");
        }
    }
}

/// The `stats: sched` line's (ticks, missed, periods): the ticks that came, the periods up to the
/// last tick that had none (the host did not run the vCPU), and the periods from the timer's
/// start to its stop at the rate the kernel reports.
fn ticks_missed_periods(out: &Output) -> (u64, u64, u64) {
    let sched = stats(out, "sched");
    (sched["ticks"], sched["missed"], sched["timer_ms"] * sched["timer_hz"] / 1000)
}

#[test]
fn ticks_match_guest_time_and_timer_hz() {
    let _cpu = alone();
    if !kvm_available("ticks_match_guest_time_and_timer_hz") {
        return;
    }
    let report = std::env::temp_dir().join(format!("lde-ticks-{}.json", std::process::id()));
    for (hz, mode) in [("100", "periodic"), ("50", "periodic"), ("100", "deadline")] {
        let path = report.to_str().unwrap();
        let out = lde(&[
            "run",
            "-q",
            "--kernel-stats",
            "--report",
            path,
            "--timer-hz",
            hz,
            "--timer-mode",
            mode,
            "spin 2000",
        ]);
        assert_eq!(out.status, Some(0), "{out:?}");
        let sched = stats(&out, "sched");
        assert_eq!(sched["timer_hz"].to_string(), hz, "a rate the kernel keeps: {out:?}");
        // Over the time the timer ran (it starts after boot and stops at shutdown), every
        // period had its tick, or is one the host made the guest miss (it did not run the vCPU
        // across the period; KVM keeps one tick pending, not one per period). A timer at the
        // wrong rate fails either way: too fast, more ticks than periods; too slow, gaps under
        // 1.5 periods count as one.
        let (ticks, missed, periods) = ticks_missed_periods(&out);
        assert!(ticks <= periods + 1, "{mode} {hz} Hz: {ticks} ticks in {periods} periods: {sched:?}");
        let error = (ticks + missed).abs_diff(periods);
        assert!(error <= 1 + periods / 50, "{mode} {hz} Hz: {ticks} ticks + {missed} missed in {periods} periods");
        // Gaps of exactly two periods would pass the count (a timer at half the rate, or a
        // host dropping every other tick): many ticks came a period after the one before on any
        // host (35-80% with the host's CPUs kept busy, all idle), none at half the rate.
        let punctual = sched["punctual"];
        assert!(punctual * 10 >= ticks && punctual <= ticks, "{mode} {hz} Hz: {punctual} of {ticks} ticks punctual");
        assert!(sched["timer_ms"] <= sched["uptime_ms"] && sched["timer_ms"] >= 2000, "{sched:?}");
        // The guest's clock agrees with lde's, over the same run: the guest's uptime (from its
        // boot to its last count, after its banner) fits in lde's time from start to end, and
        // covers at least 90% of lde's time from the banner to the end (the rest: the kernel's
        // last lines and the VM's stop).
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let banner_ms = report["timing"]["banner_ms"].as_f64().unwrap();
        let end_ms = report["timing"]["elapsed_ms"].as_f64().unwrap();
        let guest_ms = sched["uptime_ms"] as f64;
        assert!(guest_ms <= end_ms && guest_ms >= 0.9 * (end_ms - banner_ms), "guest {guest_ms} ms, lde {report}");
    }
    std::fs::remove_file(&report).ok();
}

#[test]
fn cat_blocks_on_input_while_a_counter_runs() {
    let _cpu = shared();
    if !kvm_available("cat_blocks_on_input_while_a_counter_runs") {
        return;
    }
    // "two" comes 500 ms after "one": in between, cat must block in `read`.
    let out = lde_with_slow_input(
        &["run", "-q", "--kernel-stats", "cat", "counter 2000"],
        &[b"one\n", b"two\n"],
        Duration::from_millis(500),
    );
    assert_eq!(out.status, Some(0), "{out:?}");
    let lines = out.lines();
    let one = lines.iter().position(|l| *l == "one").unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(lines[one + 1], "two", "{out:?}");
    assert!(lines.contains(&"cat: 8 bytes, end of input"), "{out:?}");
    // cat blocked: it gave the CPU up by itself, read until the end, and a tick almost never
    // found it running (one that polled for input would be preempted at nearly every tick).
    let cat = acct(&out, "cat");
    assert!(num(&cat, "voluntary") >= 1, "{cat:?}");
    assert!(num(&cat, "involuntary") <= 2, "a blocked reader does not spin: {cat:?}");
    assert!(cat["syscalls"].contains("read:"), "{cat:?}");
    // Meanwhile the counter had the CPU: nearly every tick found it running, over enough ticks
    // for 90% to mean something (however many the host made the guest miss).
    let (ticks, missed, periods) = ticks_missed_periods(&out);
    assert!(ticks >= 20, "{ticks} ticks, {missed} missed, {periods} periods: {out:?}");
    let counter = num(&acct(&out, "counter"), "ticks");
    assert!(counter * 10 >= ticks * 9, "counter {counter} of {ticks} ticks: {out:?}");
}

#[test]
fn a_deadline_timer_preempts_too() {
    let _cpu = shared();
    for host in hosts("a_deadline_timer_preempts_too") {
        let out = host.run(&["--timer-mode", "deadline", "spin 1000", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let timer = out.line_starting("kernel: timer ").unwrap();
        // KVM's in-kernel LAPIC offers the TSC deadline (PVM passes the host's CPUID, which has
        // it where /proc/cpuinfo says so); QEMU's TCG does not implement it.
        let offered = match host {
            Host::Kvm | Host::Nested => !host.recovers_doors() || cpu_flag("tsc_deadline_timer"),
            Host::Qemu => false,
        };
        let fallback = out.lines().contains(&"kernel: this CPU offers no TSC-deadline timer; using periodic mode");
        assert_eq!(fallback, !offered, "{host:?}: {out:?}");
        let expected = if offered { "kernel: timer TSC deadline, 50 Hz" } else { "kernel: timer periodic, 50 Hz" };
        assert!(timer.starts_with(expected), "{host:?}: {timer}");
        assert!(line_index(&out, "exit pid=2 name=hello") < line_index(&out, "exit pid=1 name=spin"), "{host:?}");
    }
}

/// Whether the host's /proc/cpuinfo lists `flag`.
fn cpu_flag(flag: &str) -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|w| w == flag))
}

#[test]
fn spawn_starts_a_partner_with_its_arguments() {
    let _cpu = shared();
    for host in hosts("spawn_starts_a_partner_with_its_arguments") {
        let out = host.run(&["pingpong 3"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.stdout.contains("pingpong: pid 2 yielded 3 times (partner)"), "{host:?}: {out:?}");
        assert_eq!(stats(&out, "calls")["spawn"], 1, "{host:?}");
    }
}

/// Whether the terminal `fd` is in canonical (line) mode.
fn canonical(fd: i32) -> bool {
    // SAFETY: termios is plain data, filled by tcgetattr for a terminal fd.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid termios to fill.
    assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
    t.c_lflag & libc::ICANON != 0
}

#[test]
fn a_terminal_gets_keystrokes_and_its_settings_back() {
    let _cpu = shared();
    if !kvm_available("a_terminal_gets_keystrokes_and_its_settings_back") {
        return;
    }
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (master, slave_fd) = common::pty(None);
    let slave = slave_fd.as_raw_fd();
    assert!(canonical(slave));
    let stdin = std::process::Stdio::from(slave_fd.try_clone().unwrap());
    let mut child = std::process::Command::new(common::lde_bin())
        .args(["run", "-q", "cat"])
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until lde has switched the terminal to character-at-a-time input.
    let start = std::time::Instant::now();
    while canonical(slave) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!canonical(slave), "lde turns canonical mode off while it runs");
    let mut master_file = std::fs::File::from(master);
    master_file.write_all(b"typed\n").unwrap();
    // Read on a thread, so that a guest that never echoes fails the test instead of hanging it.
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = start + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains("typed") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.extend_from_slice(&bytes),
            Err(_) => break,
        }
    }
    // SAFETY: sends SIGTERM to the child we spawned and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = common::wait_with_deadline(&mut child, "lde run cat", Duration::from_secs(30));
    assert!(String::from_utf8_lossy(&seen).contains("typed"), "cat echoed the keystrokes: {seen:?}");
    assert_eq!(status, Some(130));
    assert!(canonical(slave), "lde restored the terminal's settings");
    drop(slave_fd);
}
