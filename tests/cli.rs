//! Bad input ends with one clear line on stderr and a documented exit code, never a panic.

mod common;

use common::{lde, one_line};

#[test]
fn a_file_that_is_not_a_kernel_is_rejected() {
    let out = lde(&["run", "--kernel", "/etc/passwd"]);
    assert_eq!(out.status, Some(72), "{out:?}");
    assert_eq!(one_line(&out.stderr), "lde: error: cannot boot the kernel /etc/passwd: not an ELF file");
}

#[test]
fn a_missing_kernel_is_rejected() {
    let out = lde(&["run", "--kernel", "/nonexistent/kernel"]);
    assert_eq!(out.status, Some(72), "{out:?}");
    let line = one_line(&out.stderr);
    assert!(line.starts_with("lde: error: cannot read the kernel /nonexistent/kernel: "), "{line}");
}

#[test]
fn a_truncated_kernel_is_rejected() {
    let dir = std::env::temp_dir().join(format!("lde-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.elf");
    std::fs::write(&path, &lde::guest::KERNEL[..300]).unwrap();
    let out = lde(&["run", "--kernel", path.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status, Some(72), "{out:?}");
    assert!(one_line(&out.stderr).starts_with("lde: error: cannot boot the kernel "), "{}", out.stderr);
}

#[test]
fn zero_memory_is_a_usage_error() {
    let out = lde(&["run", "--mem", "0"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(one_line(&out.stderr).contains("0 is not in 16..=3072"), "{}", out.stderr);
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = lde(&["run", "--bogus"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(one_line(&out.stderr).contains("'--bogus'"), "{}", out.stderr);
}

#[test]
fn a_bad_timeout_is_a_usage_error() {
    let out = lde(&["run", "--timeout", "-3"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    one_line(&out.stderr);
}

#[test]
fn a_missing_kvm_device_names_the_fix() {
    let out = lde(&["run", "--kvm-device", "/nonexistent/kvm"]);
    assert_eq!(out.status, Some(71), "{out:?}");
    assert!(one_line(&out.stderr).contains("KVM is not available here"), "{}", out.stderr);
}

#[test]
fn a_device_that_is_not_kvm_is_rejected() {
    let out = lde(&["run", "--kvm-device", "/dev/null"]);
    assert_eq!(out.status, Some(71), "{out:?}");
    assert!(one_line(&out.stderr).contains("/dev/null is not a usable KVM device"), "{}", out.stderr);
}

#[test]
fn no_permission_on_kvm_names_the_fix() {
    // Root may open anything: drop to nobody (setpriv, from util-linux) to see the real error.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skip("no_permission_on_kvm_names_the_fix", "needs root to switch to another user");
        return;
    }
    let Ok(meta) = std::fs::metadata("/dev/kvm") else {
        common::skip("no_permission_on_kvm_names_the_fix", "no /dev/kvm");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o006 != 0 {
        common::skip("no_permission_on_kvm_names_the_fix", "/dev/kvm is open to everyone here");
        return;
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", common::lde_bin(), "run"]);
    let out = common::run_with_deadline(cmd, std::time::Duration::from_secs(60));
    assert_eq!(out.status, Some(71), "{out:?}");
    assert!(
        one_line(&out.stderr).contains("no permission to open /dev/kvm: add your user to the kvm group"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let out = lde(&["run", "--help"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    for needle in [
        "--mem <MIB>",
        "--timeout <SECS>",
        "--kernel <PATH>",
        "--cmdline <WORDS>",
        "--no-seccomp",
        "124   --timeout expired",
        "141   the reader of lde's output went away",
    ] {
        assert!(out.stdout.contains(needle), "{needle} missing from:\n{}", out.stdout);
    }
}

#[test]
fn a_usage_error_names_what_is_missing_and_where_to_read_more() {
    let out = lde(&["stats"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert_eq!(
        one_line(&out.stderr),
        "lde: the following required arguments were not provided: <PATH> (see 'lde stats --help')"
    );
    let out = lde(&["run", "--timer-mode", "foo"]);
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(one_line(&out.stderr).contains("[possible values: periodic, deadline] (see 'lde run --help')"), "{out:?}");
}

#[test]
fn the_program_list_is_json_on_request() {
    let out = lde(&["run", "--list", "--json"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), lde::guest::PROGRAMS.len());
    assert!(list.iter().any(|p| p["name"] == "hello" && p["about"].as_str().is_some_and(|a| !a.is_empty())));
}

#[test]
fn completions_and_the_manual_come_from_the_clap_definitions() {
    let out = lde(&["completions", "bash"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains("_lde()") && out.stdout.contains("--timer-hz"), "{}", out.stdout);
    let out = lde(&["completions", "zsh"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("#compdef lde"), "{}", out.stdout);
    let out = lde(&["man"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.stdout.contains(".TH lde 1") && out.stdout.contains("completions"), "{}", out.stdout);
}

#[test]
fn the_probe_is_json_on_request() {
    if !common::kvm_available("the_probe_is_json_on_request") {
        return;
    }
    let out = lde(&["probe", "--json"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let probe: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(probe["host"].as_str().is_some_and(|h| !h.is_empty()), "{probe}");
    let rows = probe["rows"].as_array().unwrap();
    let whats: Vec<&str> = rows.iter().map(|r| r["what"].as_str().unwrap()).collect();
    assert_eq!(whats[..2], ["syscall", "int 0x80"], "{probe}");
    assert!(rows.iter().all(|r| ["architectural", "recovered"].contains(&r["delivery"].as_str().unwrap())), "{probe}");
}

#[test]
fn none_runs_no_program_and_takes_none() {
    for args in [
        &["run", "--none", "hello"][..],
        &["run", "--none", "--program", "/bin/true"],
        &["export", "--none", "hello", "--dir", "/tmp"],
    ] {
        let out = lde(args);
        assert_eq!(out.status, Some(2), "{args:?}: {out:?}");
        assert!(one_line(&out.stderr).contains("'--none' cannot be used with"), "{args:?}: {}", out.stderr);
    }
    let dir = std::env::temp_dir().join(format!("lde-cli-none-{}", std::process::id()));
    let out = lde(&["export", "--none", "--timer-hz", "0", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
    let initrd = std::fs::read(dir.join("initrd.cpio")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(cmdline, "lde.hz=0 lde.timer=periodic lde.slice=1");
    assert!(initrd.starts_with(b"070701") && initrd.windows(10).any(|w| w == b"TRAILER!!!"), "an empty archive");
    assert!(initrd.len() < 512, "no program in it: {} bytes", initrd.len());
}
