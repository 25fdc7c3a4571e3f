//! `lde bench`: every measurement produces a median, costs more than the measurements whose
//! path it contains, and names the path it took; --baseline turns a slower median into a
//! failing exit status.

mod common;

use std::path::PathBuf;

use common::{kvm_available, lde};
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lde-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const ALL: [&str; 12] = [
    "syscall-null",
    "int80-null",
    "exception-ud",
    "exception-bp",
    "exception-pf",
    "timer-tick",
    "yield-self",
    "switch-cr3",
    "cpuid",
    "port-write",
    "host-syscall",
    "kvm-run",
];

#[test]
fn every_measurement_has_a_median_and_a_path() {
    if !kvm_available("every_measurement_has_a_median_and_a_path") {
        return;
    }
    let json = temp("all.json");
    let svg = temp("hist.svg");
    let out = lde(&["bench", "--json", json.to_str().unwrap(), "--histogram", svg.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], "lde-bench/1");
    assert!(report["host"]["kvm"].is_string() && report["host"]["cpu_model"].is_string());
    let results = report["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ALL);
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    for r in results {
        let name = r["name"].as_str().unwrap();
        let median = r["median_cycles"].as_u64().unwrap();
        assert!(median > 0, "{name}: {r}");
        assert!(r["min_cycles"].as_u64().unwrap() <= median && median <= r["p99_cycles"].as_u64().unwrap(), "{name}");
        assert!(r["samples"].as_u64().unwrap() >= 50, "{name}: {r}");
        let path = r["path"].as_str().unwrap();
        assert!(!path.is_empty() && path != "unknown" && path != "not delivered", "{name}: {path}");
        let hist: u64 = r["histogram"].as_array().unwrap().iter().map(|h| h[1].as_u64().unwrap()).sum();
        assert_eq!(hist, r["samples"].as_u64().unwrap(), "{name}: the histogram holds every sample");
        if name == "syscall-null" || name == "int80-null" {
            assert_eq!(path.starts_with("recovered"), pvm, "{name}: {path}");
        }
        // The table shows it too.
        assert!(out.stdout.lines().any(|l| l.starts_with(name)), "{name} in the table");
    }
    // A measurement that measured nothing would not cost more than a part of its own path.
    let median = |name: &str| results.iter().find(|r| r["name"] == name).unwrap()["median_cycles"].as_u64().unwrap();
    for (whole, part) in [
        ("yield-self", "syscall-null"), // a system call, then the scheduler
        ("switch-cr3", "syscall-null"), // a system call, then a switch to another process
        ("kvm-run", "host-syscall"),    // a host system call (the ioctl), then the guest
        ("port-write", "cpuid"),        // a VM exit out to lde rather than one KVM handles
    ] {
        assert!(median(whole) > median(part), "{whole} {} <= {part} {}", median(whole), median(part));
    }
    assert!(out.stdout.starts_with("host: "), "{}", out.stdout);
    assert!(out.stderr.contains("lde bench: [1/10] syscall-null"), "progress: {}", out.stderr);
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("histogram")).count(), ALL.len());
}

#[test]
fn a_baseline_catches_a_slower_median() {
    if !kvm_available("a_baseline_catches_a_slower_median") {
        return;
    }
    let json = temp("cpuid.json");
    let out = lde(&["bench", "-q", "--filter", "cpuid", "--json", json.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["results"].as_array().unwrap().len(), 1);
    let median = report["results"][0]["median_cycles"].as_u64().unwrap();

    // A baseline three times faster: today's median is a regression.
    report["results"][0]["median_cycles"] = (median / 3).max(1).into();
    let fast = temp("fast.json");
    std::fs::write(&fast, report.to_string()).unwrap();
    let out =
        lde(&["bench", "-q", "--filter", "cpuid", "--baseline", fast.to_str().unwrap(), "--max-regression", "10"]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stdout.contains("regression: cpuid median "), "{}", out.stdout);

    // A baseline three times slower: nothing regressed.
    report["results"][0]["median_cycles"] = (median * 3).into();
    let slow = temp("slow.json");
    std::fs::write(&slow, report.to_string()).unwrap();
    let out = lde(&["bench", "-q", "--filter", "cpuid", "--baseline", slow.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("no median got more than 10% worse than the baseline"), "{}", out.stdout);
}

#[test]
fn bad_bench_input_is_one_line() {
    let out = lde(&["bench", "--filter", "no-such-measurement"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("lde: error: no measurement matches"), "{}", out.stderr);
    let out = lde(&["bench", "--baseline", "/nonexistent.json"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = lde(&["bench", "--json", "/nonexistent/dir/b.json"]);
    assert_eq!(out.status, Some(74), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "refused before measuring: {}", out.stderr);
}
