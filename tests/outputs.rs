//! The files lde writes: the report of every built-in program matches the schema, and a run
//! that fails leaves earlier output files as they were.

mod common;

use common::{kvm_available, lde, temp, validate_report};
use serde_json::Value;

/// Arguments that keep each program short (the others run with none).
const ARGS: &[(&str, &str)] = &[
    ("bench", "bench exception-ud"),
    ("calls", "calls 50"),
    ("chaos", "chaos 3 1"),
    ("counter", "counter 50"),
    ("fsgs", "fsgs 0x1111 5"),
    ("fuzz", "fuzz 300"),
    ("hostile", "hostile df syscall"),
    ("pingpong", "pingpong 10"),
    ("sleeper", "sleeper 2 5"),
    ("spin", "spin 50"),
];

#[test]
fn every_built_in_program_gives_a_valid_report() {
    if !kvm_available("every_built_in_program_gives_a_valid_report") {
        return;
    }
    let list = lde(&["run", "--list"]);
    assert_eq!(list.status, Some(0), "{list:?}");
    let names: Vec<&str> = list.stdout.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.len() > 20, "{names:?}");
    let specs: Vec<String> = names
        .iter()
        .map(|n| ARGS.iter().find(|(name, _)| name == n).map_or(n.to_string(), |(_, spec)| spec.to_string()))
        .collect();
    let path = temp("all.json");
    let mut args = vec!["run", "-q", "--timeout", "120", "--report", path.to_str().unwrap()];
    args.extend(specs.iter().map(String::as_str));
    let out = lde(&args);
    assert_eq!(out.status, Some(1), "the bad-* programs are killed: {out:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    validate_report(&report);
    let procs = report["guest"]["processes"].as_array().unwrap();
    for name in &names {
        assert!(procs.iter().any(|p| p["name"] == *name), "{name} is in the report");
    }
    assert!(procs.iter().all(|p| p["state"] == "ended"), "every process ended");
    assert!(report["guest"]["syscalls"]["fixup"].as_u64().unwrap() > 0, "bench's fixup calls are counted");
    std::fs::remove_file(&path).ok();
}

#[test]
fn a_failed_run_keeps_earlier_output_files() {
    // A directory of its own: the other test's temporary file may lie beside its report.
    let dir = temp("kept");
    std::fs::create_dir_all(&dir).unwrap();
    let (report, timeline) = (dir.join("kept.json"), dir.join("kept.svg"));
    std::fs::write(&report, b"earlier report").unwrap();
    std::fs::write(&timeline, b"earlier timeline").unwrap();
    let out = lde(&[
        "run",
        "--report",
        report.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
        "--kvm-device",
        "/nonexistent",
    ]);
    assert_eq!(out.status, Some(71), "{out:?}");
    assert_eq!(std::fs::read(&report).unwrap(), b"earlier report");
    assert_eq!(std::fs::read(&timeline).unwrap(), b"earlier timeline");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")), "no temporary file is left: {left:?}");
    std::fs::remove_dir_all(&dir).ok();
}
