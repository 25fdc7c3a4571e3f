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
