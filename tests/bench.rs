//! `lde bench`: every measurement produces a positive median or says why it has none (only
//! inside the nested host, whose TCG timings may not resolve an operation), costs more than the
//! measurements whose path it contains, and names the path it took; --baseline turns a slower
//! median into a failing exit status.

mod common;

use common::{inside_nested, kvm_available, lde, temp};
use serde_json::Value;

const ALL: [&str; 13] = [
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
    "disk-read-4k",
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
    assert_eq!(report["schema"], "lde-bench/4");
    assert!(report["host"]["kvm"].is_string() && report["host"]["cpu_model"].is_string());
    let results = report["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ALL);
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    for r in results {
        let name = r["name"].as_str().unwrap();
        check_figures(r, &out.stdout);
        let path = r["path"].as_str().unwrap();
        assert!(!path.is_empty() && path != "unknown" && path != "not delivered", "{name}: {path}");
        if name == "syscall-null" || name == "int80-null" {
            assert_eq!(path.starts_with("recovered"), pvm, "{name}: {path}");
        }
        if name == "disk-read-4k" {
            assert!(path.contains(" VM exits to lde per read"), "{name}: {path}");
        }
        // The table shows it too.
        assert!(out.stdout.lines().any(|l| l.starts_with(name)), "{name} in the table");
    }
    // A measurement that measured nothing would not cost more than a part of its own path.
    let median = |name: &str| {
        let r = results.iter().find(|r| r["name"] == name).unwrap();
        r["unresolved"].is_null().then(|| r["median_cycles"].as_u64().unwrap())
    };
    for (whole, part) in [
        ("yield-self", "syscall-null"), // a system call, then the scheduler
        ("switch-cr3", "syscall-null"), // a system call, then a switch to another process
        ("kvm-run", "host-syscall"),    // a host system call (the ioctl), then the guest
        ("port-write", "cpuid"),        // a VM exit out to lde rather than one KVM handles
        ("disk-read-4k", "switch-cr3"), // a system call that blocks: switches out and back in
    ] {
        if let (Some(w), Some(p)) = (median(whole), median(part)) {
            assert!(w > p, "{whole} {w} <= {part} {p}");
        }
    }
    assert!(out.stdout.starts_with("host: "), "{}", out.stdout);
    assert!(out.stderr.contains("lde: bench [1/13] syscall-null\n"), "progress: {}", out.stderr);
    assert!(
        out.stderr.contains("lde: bench [13/13] host-syscall (on the host)\n"),
        "every row counted: {}",
        out.stderr
    );
    assert!(out.stderr.lines().all(|l| l.starts_with("lde: ")), "lde speaks as lde: {}", out.stderr);
    check_insns(&report, &out, pvm);
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let rows: Vec<_> = doc.descendants().filter(|n| n.attribute("class") == Some("histogram")).collect();
    assert_eq!(rows.len(), ALL.len());
    for row in rows {
        let has = |class: &str| row.descendants().any(|n| n.attribute("class") == Some(class));
        if has("unresolved") {
            continue;
        }
        assert!(has("median") && has("p99"), "median and p99 marked: {:?}", row.attribute("data-name"));
        assert!(row.descendants().filter(|n| n.attribute("class") == Some("bin")).count() >= 1, "bins");
        assert!(row.descendants().filter_map(|n| n.text()).any(|t| t.contains(" cyc / ")), "cycles and ns on the axis");
    }
}

/// A row's figures: a positive median, min ≤ median ≤ p99, a histogram of every sample — or,
/// only where the host's timings may not resolve an operation (the nested host: QEMU TCG), no
/// figures and the reason, in the JSON and in the table. A cost of 0 is never a figure.
fn check_figures(r: &Value, table: &str) {
    let name = r["name"].as_str().unwrap();
    let samples = r["samples"].as_u64().unwrap();
    let median = r["median_cycles"].as_u64().unwrap();
    let hist: u64 = r["histogram"].as_array().unwrap().iter().map(|h| h[1].as_u64().unwrap()).sum();
    if let Some(why) = r["unresolved"].as_str() {
        assert!(inside_nested(), "{name}: unresolved where every operation should resolve: {r}");
        assert!(!why.is_empty(), "{name}: {r}");
        assert_eq!((median, r["min_cycles"].as_u64(), hist), (0, Some(0), 0), "{name}: no figures: {r}");
        assert!(table.contains(&format!("unresolved: {why}\n")), "{name}: the table says why: {table}");
        return;
    }
    assert!(r["unresolved"].is_null(), "{name}: {r}");
    assert!(median > 0, "{name}: {r}");
    assert!(r["min_cycles"].as_u64().unwrap() <= median && median <= r["p99_cycles"].as_u64().unwrap(), "{name}");
    assert!(samples >= 50, "{name}: {r}");
    assert_eq!(hist, samples, "{name}: the histogram holds every sample");
}

/// The instruction counts and the boot rows of a full run: counted on PVM, n/a elsewhere.
fn check_insns(report: &Value, out: &common::Output, pvm: bool) {
    assert_eq!(report["insns_counted"], pvm, "{report}");
    let per_op = report["insns_per_op"].as_array().unwrap();
    let names: Vec<&str> = per_op.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["syscall-null", "int80-null", "timer-tick", "switch-cr3"]);
    let insns = |name: &str| per_op.iter().find(|r| r["name"] == name).unwrap()["insns_per_op"].as_f64();
    if pvm {
        // A system call is more than a handful of kernel instructions, a switch more than a call.
        assert!(insns("syscall-null").unwrap() > 10.0, "{per_op:?}");
        assert!(insns("switch-cr3").unwrap() > insns("syscall-null").unwrap(), "{per_op:?}");
        assert!(insns("timer-tick").unwrap() > 10.0, "{per_op:?}");
    } else {
        assert!(names.iter().all(|n| insns(n).is_none()), "n/a where ring 0 is not emulated: {per_op:?}");
        let na = |l: &str| l.split_whitespace().take(2).eq(["syscall-null", "n/a"]);
        assert!(out.stdout.lines().any(na), "{}", out.stdout);
    }
    assert!(out.stderr.contains("lde: bench insns [4/4] switch-cr3\n") || !pvm, "{}", out.stderr);
    let all = report["boot"].as_array().unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    // The floor first: a bare VM's three instructions to the shutdown port, one exit, and
    // faster than any boot of lde's kernel.
    let floor = &all[0];
    assert_eq!(floor["name"], "boot-floor", "{floor}");
    let floor_ms = &floor["milestones"].as_array().unwrap()[..];
    assert_eq!(floor_ms.len(), 1, "{floor}");
    assert_eq!((floor_ms[0]["name"].as_str(), floor_ms[0]["exits"].as_u64()), (Some("shutdown"), Some(1)));
    if pvm {
        assert!(floor_ms[0]["insns"].as_u64().unwrap() <= 3, "{floor}");
    }
    let boot = &all[1..];
    let boots = boot[0]["boots"].as_u64().unwrap();
    assert!(out.stderr.contains(&format!(
        "lde: bench boot [{0}/{0}] boot-hello (boot {1} of {1})\n",
        3 * boots,
        boots
    )));
    let milestones = |row: usize| -> Vec<&str> {
        boot[row]["milestones"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect()
    };
    assert_eq!((boot[0]["name"].as_str(), boot[0]["run"].as_str()), (Some("boot-empty"), Some("--none")));
    assert_eq!(milestones(0), ["banner", "shutdown"], "nothing to run: never in ring 3");
    assert_eq!(milestones(1), ["banner", "first-user", "shutdown"]);
    for row in boot {
        let lde_first = row["milestones"][0]["wall_ms"].as_f64().unwrap();
        assert!(floor_ms[0]["wall_ms_min"].as_f64().unwrap() < lde_first, "the floor is below {row}");
    }
    // Each milestone's ratio to the floor is printed beside it.
    let ratio = |l: &&str| {
        l.starts_with("boot-empty  shutdown ") && l.split_whitespace().last().unwrap().parse::<f64>().is_ok()
    };
    assert!(out.stdout.lines().any(|l| ratio(&l)), "{}", out.stdout);
    for row in boot {
        let ms = row["milestones"].as_array().unwrap();
        for pair in ms.windows(2) {
            // Each milestone comes later than the one before, by every measure.
            assert!(pair[0]["exits"].as_u64() <= pair[1]["exits"].as_u64(), "{pair:?}");
            assert!(pair[0]["wall_ms"].as_f64() < pair[1]["wall_ms"].as_f64(), "{pair:?}");
            if pvm {
                assert!(pair[0]["insns"].as_u64() < pair[1]["insns"].as_u64(), "{pair:?}");
            }
        }
        for m in ms {
            assert_eq!(m["reached"], row["boots"], "{m}");
            assert_eq!(m["insns"].is_u64(), pvm, "{m}");
            assert!(
                m["wall_ms_min"].as_f64() <= m["wall_ms"].as_f64()
                    && m["wall_ms"].as_f64() <= m["wall_ms_max"].as_f64()
            );
        }
    }
    // hello writes more to the console than the empty kernel: more exits to lde at shutdown.
    let at_end = |row: usize| boot[row]["milestones"].as_array().unwrap().last().unwrap()["exits"].as_u64().unwrap();
    assert!(at_end(1) > at_end(0), "{boot:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("boot-hello  first-user ")), "{}", out.stdout);
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

    // The comparisons below measure again: their baselines lie beyond any median a host could
    // give (1 cycle; a million times this one), so that the verdict is the comparison's, never
    // the chance of two runs on a loaded host (three times faster or slower was not enough).
    const SLOWER: u64 = 1_000_000;
    // A baseline of one cycle: today's median is a regression.
    report["results"][0]["median_cycles"] = 1.into();
    let fast = temp("fast.json");
    std::fs::write(&fast, report.to_string()).unwrap();
    let out =
        lde(&["bench", "-q", "--filter", "cpuid", "--baseline", fast.to_str().unwrap(), "--max-regression", "10"]);
    assert_eq!(out.status, Some(1), "{out:?}");
    assert!(out.stdout.contains("regression: cpuid median "), "{}", out.stdout);
    assert!(out.stdout.contains("compared 1 median(s) with the baseline: 1 more than 10% worse"), "{}", out.stdout);

    // A baseline a million times slower: nothing regressed.
    report["results"][0]["median_cycles"] = (median * SLOWER).into();
    let slow = temp("slow.json");
    std::fs::write(&slow, report.to_string()).unwrap();
    let out = lde(&["bench", "-q", "--filter", "cpuid", "--baseline", slow.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("improvement: cpuid median "), "{}", out.stdout);
    assert!(out.stdout.contains("0 more than 10% worse, 1 more than 10% better"), "{}", out.stdout);

    // Nothing to compare, or another kind of host: refused before measuring.
    let out = lde(&["bench", "-q", "--filter", "port-write", "--baseline", slow.to_str().unwrap()]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("it has none of the measurements to run (port-write)"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{out:?}");
    report["host"]["kvm"] = "some-other-host".into();
    let other = temp("other.json");
    std::fs::write(&other, report.to_string()).unwrap();
    let out = lde(&["bench", "-q", "--filter", "cpuid", "--baseline", other.to_str().unwrap()]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("this host is ") && out.stderr.contains("not comparable"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{out:?}");

    // Hosts side by side: that is what --compare is for (no KVM needed).
    let chart = temp("compare.svg");
    let out = lde(&[
        "bench",
        "--compare",
        json.to_str().unwrap(),
        other.to_str().unwrap(),
        "--compare-svg",
        chart.to_str().unwrap(),
    ]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("  B  {}: some-other-host on ", other.display())), "{}", out.stdout);
    let row: Vec<&str> = out.stdout.lines().find(|l| l.starts_with("cpuid")).unwrap().split_whitespace().collect();
    assert_eq!((row.len(), row[1]), (5, median.to_string().as_str()), "{row:?}");
    assert_eq!(row[3], (median * SLOWER).to_string(), "{row:?}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(roxmltree::Document::parse(&svg).unwrap().descendants().any(|n| n.attribute("data-name") == Some("cpuid")));
}

#[test]
fn bad_bench_input_is_one_line() {
    let out = lde(&["bench", "--filter", "no-such-measurement"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("lde: error: no measurement matches"), "{}", out.stderr);
    assert!(
        out.stderr.contains("kvm-run, boot-floor, boot-empty, boot-hello"),
        "the boot rows are named: {}",
        out.stderr
    );
    let out = lde(&["bench", "--insns", "--filter", "cpuid"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(
        out.stderr.starts_with("lde: error: no instruction count among cpuid; counted: syscall-null"),
        "{}",
        out.stderr
    );
    let out = lde(&["bench", "--boots", "0"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    let out = lde(&["bench", "--baseline", "/nonexistent.json"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = lde(&["bench", "--json", "/nonexistent/dir/b.json"]);
    assert_eq!(out.status, Some(74), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "refused before measuring: {}", out.stderr);
}

#[test]
fn the_two_processor_rows_need_and_use_two_processors() {
    for row in ["ipi-roundtrip", "tlb-shootdown"] {
        let out = lde(&["bench", "--filter", row]);
        assert_eq!(out.status, Some(2), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("need two processors: add --cpus 2"), "{}", out.stderr);
    }
    if !kvm_available("the_two_processor_rows_need_and_use_two_processors") {
        return;
    }
    let json = temp("ipi.json");
    let filters = ["--filter", "ipi-roundtrip", "--filter", "tlb-shootdown"];
    let out = lde(&[&["bench", "-q", "--cpus", "2", "--json", json.to_str().unwrap()][..], &filters].concat());
    assert_eq!(out.status, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ipi-roundtrip", "tlb-shootdown"], "{report}");
    for (r, path) in results.iter().zip(["CPU 0 -> CPU 1 and back", "invlpg, answer seen"]) {
        assert!(r["path"].as_str().unwrap().contains(path), "{r}");
        if inside_nested() && r["unresolved"].is_string() {
            continue;
        }
        assert!(r["unresolved"].is_null(), "{r}");
        let median = r["median_cycles"].as_u64().unwrap();
        assert!(median > 0 && r["min_cycles"].as_u64().unwrap() <= median, "{r}");
        assert!(median <= r["p99_cycles"].as_u64().unwrap() && r["samples"].as_u64().unwrap() >= 50, "{r}");
        let name = r["name"].as_str().unwrap();
        assert!(out.stdout.lines().any(|l| l.starts_with(name)), "{}", out.stdout);
    }
    // Where KVM counts the kernel's instructions (PVM), each row has processor 1's count per
    // sample (its answer and its idle loop's wake; where the IPI finds it moves the wake by a
    // few instructions now and then).
    if report["insns_counted"] == true {
        let insns = report["insns_per_op"].as_array().unwrap();
        for name in ["ipi-roundtrip", "tlb-shootdown"] {
            let row = insns.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no {name} count: {report}"));
            let per_op = row["insns_per_op"].as_f64().unwrap_or_else(|| panic!("{row}"));
            assert!(per_op > 0.0, "{row}");
        }
    }
}
