//! The instruction-count gate: where KVM counts the kernel's emulated instructions (PVM), the
//! counts of `lde bench --insns` (empty boot, `hello`, per-operation rows) must stay within
//! their margins of the baseline checked in for this kind of host,
//! `tests/insn-baseline/<kind>.json`. A kind of host without a baseline is skipped with the
//! reason (hardware KVM runs ring 0 natively: there is nothing to count).

mod common;

use std::path::{Path, PathBuf};

use common::{kvm_available, lde, repo_root, skip, temp};
use serde_json::Value;

/// The baseline of this kind of host, if the repository has one; prints SKIP otherwise.
fn baseline(test: &str) -> Option<(String, PathBuf)> {
    if !kvm_available(test) {
        return None;
    }
    let kind = lde::host::detect().kvm;
    let path = repo_root().join("tests/insn-baseline").join(format!("{}.json", kind.slug()));
    if let Err(why) = lde::bench::insns_counted(kind) {
        skip(test, &format!("no instruction counts on {} ({why})", kind.slug()));
        return None;
    }
    if !path.exists() {
        skip(test, &format!("no instruction baseline for this kind of host ({})", path.display()));
        return None;
    }
    Some((kind.slug().to_string(), path))
}

/// `lde bench --insns -q --boots 1 --filter FILTER FLAG FILE`.
fn bench_insns(filter: &str, flag: &str, file: &Path) -> common::Output {
    lde(&["bench", "--insns", "-q", "--boots", "1", "--filter", filter, flag, file.to_str().unwrap()])
}

#[test]
fn instruction_counts_hold_their_baseline() {
    let Some((kind, path)) = baseline("instruction_counts_hold_their_baseline") else {
        return;
    };
    let out = lde(&["bench", "--insns", "-q", "--boots", "3", "--insn-baseline", path.to_str().unwrap()]);
    assert_eq!(
        out.status,
        Some(0),
        "the kernel's instruction counts left their baseline:\n{}{}\nif that is intended, refresh it from the \
         repository root with `cargo run --release -q -- bench --insns --write-insn-baseline \
         tests/insn-baseline/{kind}.json` and commit it",
        out.stdout,
        out.stderr
    );
    // Every count of the baseline was measured and compared.
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for count in file["counts"].as_array().unwrap() {
        let row = count["row"].as_str().unwrap();
        assert!(out.stdout.contains(&format!("held: {row} ")), "{row} compared:\n{}", out.stdout);
    }
    assert!(out.stdout.contains(" 0 failed "), "{}", out.stdout);
}

#[test]
fn a_grown_or_fallen_count_fails_and_names_its_row() {
    let Some((_, path)) = baseline("a_grown_or_fallen_count_fails_and_names_its_row") else {
        return;
    };
    // The empty boot's counts, shifted: its shutdown must now look twice too big (by far more
    // than load could move a count that waits on the clock, should the kernel have such work),
    // its banner (exact) 20 % below a stale baseline.
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for count in file["counts"].as_array_mut().unwrap() {
        let insns = count["insns"].as_f64().unwrap();
        match count["row"].as_str().unwrap() {
            "boot-empty/shutdown" => count["insns"] = (insns / 2.0).round().into(),
            "boot-empty/banner" => count["insns"] = (insns * 1.25).round().into(),
            _ => {}
        }
    }
    let shifted = temp("shifted.json");
    std::fs::write(&shifted, file.to_string()).unwrap();
    let out = bench_insns("boot-empty", "--insn-baseline", &shifted);
    assert_eq!(out.status, Some(1), "{out:?}");
    let line = |prefix: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {}", out.stdout))
            .to_string()
    };
    let grew = line("REGRESSION: boot-empty/shutdown ");
    assert!(grew.contains("refresh the baseline with `lde bench --insns --write-insn-baseline "), "{grew}");
    let stale = line("STALE: boot-empty/banner ");
    assert!(stale.contains("baseline is stale: refresh with `"), "{stale}");
    assert!(out.stdout.contains("compared 2 instruction count(s) with the baseline: 2 failed"), "{}", out.stdout);

    // What --write-insn-baseline writes is what --insn-baseline reads, and the run holds it.
    let written = temp("written.json");
    let out = bench_insns("syscall", "--write-insn-baseline", &written);
    assert_eq!(out.status, Some(0), "{out:?}");
    let out = bench_insns("syscall", "--insn-baseline", &written);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("held: syscall-null "), "{}", out.stdout);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&written).unwrap()).unwrap();
    assert_eq!(file["schema"], "lde-insn-baseline/1");
    assert_eq!(file["counts"].as_array().unwrap().len(), 1, "{file}");
    assert_eq!(file["counts"][0]["row"], "syscall-null");
    assert!(file["counts"][0]["insns"].as_f64().unwrap() > 10.0, "{file}");
}

#[test]
fn a_baseline_of_another_kind_of_host_is_refused() {
    let other = temp("other.json");
    let text = r#"{"schema":"lde-insn-baseline/1","host_kind":"another-kvm","cpu_model":"x","lde_version":"0","refresh":"r","counts":[]}"#;
    std::fs::write(&other, text).unwrap();
    let out = lde(&["bench", "--insns", "--insn-baseline", other.to_str().unwrap()]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("it holds for another-kvm, this host is "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "refused before measuring: {}", out.stderr);
    let old = temp("old.json");
    std::fs::write(&old, text.replace("lde-insn-baseline/1", "lde-insn-baseline/0")).unwrap();
    let out = lde(&["bench", "--insns", "--insn-baseline", old.to_str().unwrap()]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(out.stderr.contains("its schema is \"lde-insn-baseline/0\""), "{}", out.stderr);
}
