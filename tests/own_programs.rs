//! The README's recipes for a program of one's own: examples/c (gcc) and examples/rust (cargo)
//! build, and run under lde; a position-independent or wrongly linked build is refused with the
//! reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kvm_available, lde, repo_root, run_with_deadline, skip};

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lde-own-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The README's gcc command for examples/c/hello.c, with `extra` flags after it.
fn gcc(out: &Path, flags: &[&str]) -> Option<common::Output> {
    if Command::new("gcc").arg("--version").output().is_err() {
        skip("own_programs", "gcc is not installed");
        return None;
    }
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-asynchronous-unwind-tables"])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(repo_root().join("examples/c/hello.c"));
    Some(run_with_deadline(cmd, Duration::from_secs(60)))
}

const C_FLAGS: &[&str] = &["-fno-pic", "-no-pie", "-mcmodel=large", "-Wl,-Ttext-segment=0x8000000000"];

#[test]
fn the_c_recipe_runs() {
    if !kvm_available("the_c_recipe_runs") {
        return;
    }
    let exe = out_dir().join("hello-c");
    let Some(built) = gcc(&exe, C_FLAGS) else { return };
    assert_eq!(built.status, Some(0), "{built:?}");
    let out = lde(&["run", "-q", "--program", exe.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.lines().contains(&"hello from C in ring 3, pid 1"), "{out:?}");
    assert!(out.lines().contains(&"exit pid=1 name=hello-c status=0"), "{out:?}");
}

#[test]
fn the_rust_recipe_runs() {
    if !kvm_available("the_rust_recipe_runs") {
        return;
    }
    let target = out_dir().join("rust-target");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(repo_root().join("examples/rust"))
        .env("CARGO_TARGET_DIR", &target)
        // The example's own flags (.cargo/config.toml), not those of the tests' build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let built = run_with_deadline(cmd, Duration::from_secs(300));
    assert_eq!(built.status, Some(0), "{built:?}");
    let exe = target.join("x86_64-unknown-none/release/hello-rust");
    let out = lde(&["run", "-q", "--program", exe.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.lines().contains(&"hello from Rust in ring 3"), "{out:?}");
    assert!(out.lines().contains(&"exit pid=1 name=hello-rust status=0"), "{out:?}");
}

#[test]
fn pie_and_wrongly_linked_programs_are_refused_with_the_reason() {
    if !kvm_available("pie_and_wrongly_linked_programs_are_refused_with_the_reason") {
        return;
    }
    let dir = out_dir();
    let cases = [
        ("pie", vec!["-fpie", "-static-pie"], "a position-independent executable (PIE)"),
        ("low", vec!["-fno-pic", "-no-pie"], "a segment lies outside user space (0x8000000000 to "),
    ];
    for (name, flags, reason) in cases {
        let exe = dir.join(name);
        let Some(built) = gcc(&exe, &flags) else { return };
        assert_eq!(built.status, Some(0), "{built:?}");
        let out = lde(&["run", "-q", "--program", exe.to_str().unwrap(), "hello"]);
        assert_eq!(out.status, Some(1), "{out:?}");
        let failed = out.line_starting("failed ").unwrap_or_else(|| panic!("{name}: {out:?}"));
        assert!(failed.starts_with(&format!("failed name={name} reason=bad ELF: {reason}")), "{failed}");
    }
}
