//! What one process can see of another and of the machine: FPU and SSE registers across
//! preemptions, the bytes of every page it is given, the I/O ports ring 3 may use; and what a
//! process gets when it exhausts the kernel's resources (process slots, frames, its stack).
//! Each runs under KVM and under QEMU TCG, and every run must end with no frame in use.

mod common;

use common::{acct_all, assert_no_leak, hosts, num};

#[test]
fn fpu_and_sse_registers_survive_hundreds_of_preemptions() {
    for host in hosts("fpu_and_sse_registers_survive_hundreds_of_preemptions") {
        let out = host.run(&["--timer-hz", "1000", "fpu 1", "fpu 2", "fpu 3"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        for pattern in 1..=3 {
            // "started reset": its registers held nothing of the processes that ran before it.
            let line = format!("fpu: {pattern}: started reset, 300 rounds, 0 wrong");
            assert!(out.lines().contains(&line.as_str()), "{host:?}: {out:?}");
        }
        let accts = acct_all(&out, "fpu");
        assert_eq!(accts.len(), 3, "{host:?}: {out:?}");
        // The rate the kernel kept (it may lower 1000 Hz where ring 0 is slow), as a slice in ms.
        let hz = common::stats(&out, "sched")["timer_hz"];
        assert!(hz > 0, "{host:?}: {out:?}");
        let slice_ms = 1000_u64.div_ceil(hz);
        for acct in &accts {
            assert_eq!(num(acct, "voluntary"), 37, "{host:?}: a yield every 8 rounds: {out:?}");
            // Each time it gets the CPU it finishes at most slice_ms + 2 of its 300 rounds of
            // 1 ms (the round that ran out while it waited, those of its slice, one across a
            // pause of the vCPU), whatever the host's load; each time but its 37 yields and
            // its exit ends in a preemption.
            let scheduled = num(acct, "scheduled");
            let preempted = num(acct, "involuntary");
            assert_eq!(scheduled, preempted + 37 + 1, "{host:?}: {acct:?}");
            assert!(scheduled >= 300 / (slice_ms + 2), "{host:?}: {slice_ms} ms slices: {acct:?}");
            // And it was the timer that took the CPU: nearly every tick it was charged with
            // (all but those after the others had ended) preempted it.
            assert!(preempted * 2 >= num(acct, "ticks"), "{host:?}: {acct:?}");
        }
        assert_no_leak(&out);
    }
}

/// (port, access, allowed): the TSS I/O bitmap opens the bench port (0xf9) to ring 3, one byte
/// wide, and nothing else.
const PORTS: [(&str, &str, bool); 15] = [
    ("3f8", "in", false),
    ("3f8", "out", false),
    ("f8", "in", false),
    ("f8", "out", false),
    ("20", "in", false),
    ("20", "out", false),
    ("cf8", "in", false),
    ("cf8", "out", false),
    ("f9", "in", true),
    ("f9", "out", true),
    // lde's milestone port, and its console port, whose doorbell would have lde print any guest
    // memory, the kernel's included.
    ("fa", "out", false),
    ("fb", "inl", false),
    ("fb", "outl", false),
    // Four bytes from 0xf9 include 0xfa–0xfc, which the bitmap denies.
    ("f9", "inl", false),
    ("f9", "outl", false),
];

#[test]
fn ring_3_gets_only_the_io_ports_the_tss_bitmap_opens() {
    for host in hosts("ring_3_gets_only_the_io_ports_the_tss_bitmap_opens") {
        let specs: Vec<String> = PORTS.iter().map(|(port, op, _)| format!("ports {port} {op}")).collect();
        let args: Vec<&str> = specs.iter().map(String::as_str).collect();
        let out = host.run(&args);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        let lines = out.lines();
        for (i, (port, op, allowed)) in PORTS.iter().enumerate() {
            let pid = i + 1;
            let port = u16::from_str_radix(port, 16).unwrap();
            let worked = out.line_starting(&format!("ports: {op} {port:#x}: allowed, value ")).is_some();
            let exited = lines.contains(&format!("exit pid={pid} name=ports status=0").as_str());
            let killed = out.line_starting(&format!("killed pid={pid} name=ports trap=#GP ")).is_some();
            if *allowed {
                assert!(worked && exited, "{host:?}: {op} {port:#x} must work: {out:?}");
            } else {
                assert!(killed, "{host:?}: {op} {port:#x} must be killed by #GP: {out:?}");
                assert!(!worked, "{host:?}: {op} {port:#x} must not work: {out:?}");
            }
        }
        let gp = common::stats(&out, "traps")["13:#GP"];
        assert_eq!(gp, PORTS.iter().filter(|p| !p.2).count() as u64, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn every_page_a_process_gets_is_zero_even_after_memory_ran_out() {
    for host in hosts("every_page_a_process_gets_is_zero_even_after_memory_ran_out") {
        // `exhaust frames` starts `fresh dirty` processes (1.5 MiB each) until spawn fails;
        // their zero-filled pages are mapped when touched, so memory runs out while they fill
        // it and those that find no frame are killed with #PF. It `wait`s until all have ended;
        // then the only free frames are those they dirtied, and two `fresh check` processes
        // get them. The third checker runs at the start.
        let out = host.run(&["--mem", "16", "--timer-hz", "100", "exhaust frames", "fresh check"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        let prefix = "exhaust: frames: ";
        let line = out.line_starting(prefix).unwrap_or_else(|| panic!("{host:?}: {out:?}"));
        let started: u64 = line[prefix.len()..].split(' ').next().unwrap().parse().unwrap();
        assert!(
            line.ends_with(" started, then spawn returned -11") || line.ends_with(" started, then spawn returned -12"),
            "{host:?}: {line}"
        );
        assert!(started >= 11, "{host:?}: more than 15 MiB asked for: {line}");
        // It waited for every one of them (exited or killed) before starting the checkers.
        let waited = format!("exhaust: frames: {started} ended, then wait returned -10");
        assert!(out.lines().contains(&waited.as_str()), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=1 name=exhaust status=0"), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exhaust: frames: 2 checkers started"), "{host:?}: {out:?}");
        let killed =
            out.lines().into_iter().filter(|l| l.starts_with("killed ") && l.contains(" name=fresh trap=#PF ")).count()
                as u64;
        assert!(killed >= 1, "{host:?}: memory never ran out: {out:?}");
        // The two late checkers always report; the first may be among those memory ran out on.
        let checks: Vec<&str> = out.lines().into_iter().filter(|l| l.starts_with("fresh: ")).collect();
        assert!(checks.len() >= 2, "{host:?}: {out:?}");
        for check in checks {
            let checked: u64 = check["fresh: ".len()..].split(' ').next().unwrap().parse().unwrap();
            assert!(checked > 1536 * 1024 + 32 * 1024, "{host:?}: {check}");
            assert!(check.contains(" bytes checked, 0 not zero "), "{host:?}: {check}");
        }
        let exits = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.contains(" name=fresh status=0"));
        assert_eq!(exits.count() as u64 + killed, started + 3, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn spawn_that_runs_out_of_memory_keeps_no_frame() {
    for host in hosts("spawn_that_runs_out_of_memory_keeps_no_frame") {
        // The hook starts hello with 0, 1, 2, ... free frames: every point at which loading a
        // program can run out (its page tables, a segment page, its stack page) fails once.
        let out = host.run(&["--mem", "16", "--cmdline", "lde.test=spawn-oom", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let prefix = "kernel: test hook: spawn ran out of memory ";
        let line = out.line_starting(prefix).unwrap_or_else(|| panic!("{host:?}: {out:?}"));
        let failures: u64 = line[prefix.len()..].split(' ').next().unwrap().parse().unwrap();
        assert!(failures >= 6, "{host:?}: {line}");
        // Each attempt took a pid: the one that started has the next.
        let started = format!(" times, kept frames 0 times, then started pid {}", failures + 1);
        assert!(line.ends_with(&started), "{host:?}: {line}");
        let exits = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=hello status=0"));
        assert_eq!(exits.count(), 2, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn a_full_process_table_refuses_spawn_with_eagain() {
    for host in hosts("a_full_process_table_refuses_spawn_with_eagain") {
        let out = host.run(&["exhaust procs"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        // 16 slots: the parent and 15 children.
        assert!(out.lines().contains(&"exhaust: procs: 15 started, then spawn returned -11"), "{host:?}: {out:?}");
        let exits = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=exhaust status=0"));
        assert_eq!(exits.count(), 16, "{host:?}: {out:?}");
        assert_eq!(common::stats(&out, "sched")["spawned"], 16, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn a_deep_recursion_is_killed_at_the_user_stack_guard_page() {
    for host in hosts("a_deep_recursion_is_killed_at_the_user_stack_guard_page") {
        let out = host.run(&["exhaust stack", "hello"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        assert!(out.line_starting("killed pid=1 name=exhaust trap=#PF ").is_some(), "{host:?}: {out:?}");
        assert!(!out.stdout.contains("the recursion returned"), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: the kernel carries on: {out:?}");
        assert_no_leak(&out);
    }
}
