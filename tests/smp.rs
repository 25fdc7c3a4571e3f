//! `lde run --cpus N` (N > 1) passes `lde.cpus=N`: the kernel reads the MP table (or, under
//! QEMU, ACPI's MADT), starts every
//! other processor with INIT, SIPI, SIPI and reports each one that checks in; the run is
//! otherwise the same, and lde finds no vCPU the guest never started. With one processor no new
//! line appears and the command line has no `lde.cpus`. With a second processor online, processor
//! 0 times IPI round trips to it at boot and prints their median.

mod common;

use common::{hosts, Host, Output};

/// The (cpu, apic id) of each `kernel: cpu N online (apic id A) after T us` line, in order.
fn online(out: &Output) -> Vec<(u64, u64)> {
    out.lines()
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("kernel: cpu ")?;
            let (cpu, rest) = rest.split_once(" online (apic id ")?;
            let (apic, rest) = rest.split_once(") after ")?;
            rest.strip_suffix(" us")?.parse::<u64>().ok()?;
            Some((cpu.parse().ok()?, apic.parse().ok()?))
        })
        .collect()
}

/// The median of the `kernel: ipi round trip to cpu 1: median C cycles, …` line, if there is one.
fn ipi_median(out: &Output) -> Option<u64> {
    out.lines().iter().find_map(|line| {
        let rest = line.strip_prefix("kernel: ipi round trip to cpu 1: median ")?;
        rest.split_once(" cycles")?.0.parse().ok()
    })
}

fn assert_hello(host: Host, out: &Output) {
    assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
    let lines = out.lines();
    assert!(lines.contains(&"hello from ring 3 (pid 1), written through syscall"), "{host:?}: {out:?}");
    assert!(lines.contains(&"exit pid=1 name=hello status=0"), "{host:?}: {out:?}");
}

#[test]
fn every_processor_checks_in() {
    // lde's own MP table on KVM; under QEMU (SeaBIOS, whose MP table names only the first
    // processor) the kernel finds them in ACPI's MADT.
    for host in hosts("every_processor_checks_in") {
        for cpus in [2u64, 4] {
            let out = host.run(&["--cpus", &cpus.to_string(), "hello"]);
            assert_hello(host, &out);
            let expected: Vec<(u64, u64)> = (1..cpus).map(|i| (i, i)).collect();
            assert_eq!(online(&out), expected, "{host:?} --cpus {cpus}: {out:?}");
            assert!(!out.stdout.contains("did not start"), "{host:?} --cpus {cpus}: {out:?}");
            assert!(!out.stderr.contains("never started"), "{host:?} --cpus {cpus}: {out:?}");
        }
    }
}

#[test]
fn ipi_round_trip_is_measured() {
    for host in hosts("ipi_round_trip_is_measured") {
        let out = host.run(&["--cpus", "2", "hello"]);
        assert_hello(host, &out);
        let median = ipi_median(&out);
        assert!(median.is_some_and(|m| m > 0), "{host:?}: no positive ipi median: {out:?}");
        assert!(!out.stdout.contains("got no answer"), "{host:?}: {out:?}");
    }
}

#[test]
fn one_processor_boots_as_before() {
    for host in hosts("one_processor_boots_as_before") {
        let out = host.run(&["--cpus", "1", "hello"]);
        assert_hello(host, &out);
        assert!(!out.stdout.contains("lde.cpus"), "{host:?}: {out:?}");
        assert!(!out.lines().iter().any(|l| l.starts_with("kernel: cpu ")), "{host:?}: {out:?}");
        assert_eq!(ipi_median(&out), None, "{host:?}: {out:?}");
        assert!(!out.stderr.contains("never started"), "{host:?}: {out:?}");
    }
}

/// Whether two spans overlap by more than rounding (µs as f64).
fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 - 0.01 && b.0 < a.1 - 0.01
}

/// The test: two counters on two processors run at once. Both reach their exit lines;
/// the kernel's lines show both processors ran processes in ring 3; where lde runs (KVM, the
/// nested host), the report gives both ring-3 time and the trace shows the two counters running
/// at the same instant, never two on one processor.
#[test]
fn two_processes_run_at_once_on_two_processors() {
    for host in hosts("two_processes_run_at_once_on_two_processors") {
        let (report, trace) = (common::temp("smp-report.json"), common::temp("smp-trace.json"));
        let timeline = common::temp("smp-timeline.svg");
        let mut args = vec!["--cpus", "2", "counter 600", "counter 600"];
        if host != Host::Qemu {
            let files = [report.to_str().unwrap(), trace.to_str().unwrap(), timeline.to_str().unwrap()];
            args.splice(0..0, ["--report", files[0], "--trace", files[1], "--timeline", files[2]]);
        }
        let out = host.run(&args);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        for pid in [1, 2] {
            assert!(
                out.lines().contains(&format!("exit pid={pid} name=counter status=0").as_str()),
                "{host:?}: {out:?}"
            );
        }
        for cpu in ["cpu0", "cpu1"] {
            let stats = common::stats(&out, cpu);
            assert!(stats["switches"] >= 1 && stats["user_ms"] > 0, "{host:?}: {cpu} ran no process: {out:?}");
        }
        assert!(common::stats(&out, "lock")["acquisitions"] > 0, "{host:?}: {out:?}");
        if host == Host::Qemu {
            continue;
        }
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        common::validate_report(&report);
        let cpus = report["guest"]["cpus"].as_array().unwrap();
        assert_eq!(cpus.len(), 2, "{host:?}: {cpus:?}");
        assert!(cpus.iter().all(|c| c["user_ns"].as_u64().unwrap() > 0), "{host:?}: {cpus:?}");
        assert!(report["guest"]["kernel_lock"]["acquisitions"].as_u64().unwrap() > 0, "{host:?}");
        let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
        let (one, two) = (common::running_slices(&trace, 1), common::running_slices(&trace, 2));
        assert!(
            one.iter().any(|a| two.iter().any(|b| overlap((a.0, a.1), (b.0, b.1)) && a.2 != b.2)),
            "{host:?}: the counters never ran at the same time: {one:?} {two:?}"
        );
        // The timeline has a lane per processor, and each shows a counter running on it.
        let svg = std::fs::read_to_string(&timeline).unwrap();
        for cpu in 0..2 {
            let start =
                svg.find(&format!("data-cpu=\"{cpu}\"")).unwrap_or_else(|| panic!("{host:?}: no cpu {cpu} lane"));
            let lane = &svg[start..svg[start..].find("</g>").map_or(svg.len(), |end| start + end)];
            assert!(lane.contains("cpu ") && lane.contains(" counter "), "{host:?}: cpu {cpu}'s lane: {lane}");
        }
        let mut by_cpu: Vec<(f64, f64, u64)> = one.iter().chain(&two).copied().collect();
        by_cpu.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (i, a) in by_cpu.iter().enumerate() {
            for b in &by_cpu[i + 1..] {
                assert!(!(a.2 == b.2 && overlap((a.0, a.1), (b.0, b.1))), "{host:?}: two ran at once on cpu {}", a.2);
            }
        }
    }
}

/// The boot's timed one-page shootdowns (10 warm-ups and 200 samples): more than these were sent
/// for freed address spaces.
const BOOT_SHOOTDOWNS: u64 = 210;

/// An address space is shot down before it is freed: `tlbstale` runs 40 children one after
/// another on two processors (an idle processor keeps the last child's page tables, which the
/// next child's reuse) and none finds a stale translation, with shootdowns sent for the freed
/// spaces. With the kernel's shootdowns left out (`lde.test=no-shootdown`) the same run does not
/// end well: a processor left holding freed page tables crashes the guest, or a child reads its
/// predecessor's data.
#[test]
fn freed_address_spaces_are_shot_down_first() {
    for host in hosts("freed_address_spaces_are_shot_down_first") {
        let out = host.run(&["--cpus", "2", "tlbstale 40"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"tlbstale: 40 rounds, no stale translation"), "{host:?}: {out:?}");
        let sent = common::stats(&out, "tlb")["shootdowns"];
        assert!(sent > BOOT_SHOOTDOWNS, "{host:?}: no address space was shot down: {out:?}");
        let bad = host.run(&["--cpus", "2", "--cmdline", "lde.test=no-shootdown", "tlbstale 40"]);
        assert!(bad.stdout.contains("kernel: test hook: no TLB shootdowns"), "{host:?}: {bad:?}");
        assert!(
            bad.status != Some(0) || !bad.lines().contains(&"tlbstale: 40 rounds, no stale translation"),
            "{host:?}: without shootdowns tlbstale found nothing: {bad:?}"
        );
    }
}
