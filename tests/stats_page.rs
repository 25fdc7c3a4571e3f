//! The host's side of the stats page at the edges: a guest that dies in the middle of an update
//! still leaves its counters in the report (marked torn), and a guest that writes events
//! faster than lde reads them has every event accounted for as recorded or lost.

mod common;

use common::{kvm_available, lde};
use serde_json::Value;

fn report(name: &str, args: &[&str]) -> (common::Output, Value) {
    let dir = std::env::temp_dir().join(format!("lde-stats-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let path_arg = path.to_str().unwrap();
    let mut all = vec!["run", "-q", "--report", path_arg];
    all.extend_from_slice(args);
    let out = lde(&all);
    let report = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}): {out:?}"));
    std::fs::remove_file(&path).ok();
    (out, report)
}

#[test]
fn a_guest_that_dies_mid_update_keeps_its_counters_marked_torn() {
    if !kvm_available("a_guest_that_dies_mid_update_keeps_its_counters_marked_torn") {
        return;
    }
    let (out, r) = report("torn.json", &["--cmdline", "lde.test=die-mid-update", "hello"]);
    assert_eq!(out.status, Some(3), "{out:?}");
    assert!(out.lines().contains(&"kernel: test hook: shutting down in the middle of a stats update"), "{out:?}");
    let guest = &r["guest"];
    assert_eq!(guest["counters_torn"], Value::Bool(true), "{r}");
    // The value written inside the unfinished update is there: the page was read after the stop.
    assert_eq!(guest["timer"]["ticks"].as_u64(), Some(lde_abi::cmdline::TORN_TICKS), "{r}");

    let (out, r) = report("whole.json", &["hello"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert_eq!(r["guest"]["counters_torn"], Value::Bool(false), "{r}");
}

#[test]
fn events_written_faster_than_read_are_recorded_or_counted_lost() {
    if !kvm_available("events_written_faster_than_read_are_recorded_or_counted_lost") {
        return;
    }
    // 2 × 12,000 system calls, one event each: more than the ring's 16,384 entries, so lde
    // must read while the kernel writes and may be lapped.
    let (out, r) = report("events.json", &["calls 12000"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let events = &r["guest"]["events"];
    let n = |k: &str| events[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    assert!(n("written") > lde_abi::stats::EVENTS as u64, "{r}");
    assert_eq!(n("recorded") + n("lost"), n("written"), "{r}");
    assert!(n("recorded") > 0, "{r}");
}
