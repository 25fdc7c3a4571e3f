//! `lde run --cpus N`: the other vCPUs wait in KVM's uninitialized state for the guest to start
//! them (lde's kernel does, tests/smp.rs; told `lde.cpus=1` it starts none), the run ends as
//! usual, and lde says which vCPUs the guest never started.

mod common;

use common::{kvm_available, lde, one_line};

#[test]
fn extra_vcpus_wait_and_are_named_when_never_started() {
    if !kvm_available("extra_vcpus_wait_and_are_named_when_never_started") {
        return;
    }
    // `lde.cpus=1` on the command line (which lde then does not override): the kernel starts
    // no other processor.
    let one = lde(&["run", "-q", "--cmdline", "lde.cpus=1", "hello"]);
    let two = lde(&["run", "-q", "--cpus", "3", "--cmdline", "lde.cpus=1", "hello"]);
    assert_eq!((one.status, two.status), (Some(0), Some(0)), "{two:?}");
    assert_eq!(one.stdout, two.stdout, "the guest's output is the same with more vCPUs");
    assert!(!one.stderr.contains("never started"), "{one:?}");
    let never: Vec<&str> = two.stderr.lines().filter(|l| l.contains("never started")).collect();
    assert_eq!(
        never,
        [
            "lde: vCPU 1 was never started: the guest sent it no INIT and SIPI",
            "lde: vCPU 2 was never started: the guest sent it no INIT and SIPI"
        ],
        "{two:?}"
    );
}

#[test]
fn a_timeout_stops_every_vcpu() {
    if !kvm_available("a_timeout_stops_every_vcpu") {
        return;
    }
    // vCPUs the guest never started sit inside KVM_RUN; started ones spin in ring 3, one
    // process each: either way the run ends at the timeout.
    let idle = lde(&["run", "-q", "--cpus", "4", "--cmdline", "lde.cpus=1", "--timeout", "1", "spin 0"]);
    let busy = lde(&["run", "-q", "--cpus", "4", "--timeout", "1", "spin 0", "spin 0", "spin 0", "spin 0"]);
    for out in [idle, busy] {
        assert_eq!(out.status, Some(124), "{out:?}");
        assert!(out.stderr.contains("lde: timeout: "), "{out:?}");
    }
}

/// SIGTERM ends a run whose two processors both spin in ring 3: every vCPU stops, and lde says
/// why (exit 130), once both run processes (the API's report names two processors).
#[test]
fn a_signal_stops_every_busy_vcpu() {
    if !kvm_available("a_signal_stops_every_busy_vcpu") {
        return;
    }
    let sock = common::temp("cpus-signal.sock");
    let child = std::process::Command::new(common::lde_bin())
        .args(["run", "-q", "--cpus", "2", "--timeout", "120", "--api-sock", sock.to_str().unwrap()])
        .args(["spin 0", "spin 0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let stats = lde(&["stats", sock.to_str().unwrap()]);
        let both = serde_json::from_str::<serde_json::Value>(&stats.stdout).ok().is_some_and(|r| {
            r["guest"]["cpus"]
                .as_array()
                .is_some_and(|cpus| cpus.len() == 2 && cpus.iter().all(|c| c["switches"].as_u64().unwrap_or(0) > 0))
        });
        if both {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "both processors never ran: {stats:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sends a signal to the child we spawned and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = common::finish_with_deadline(child, "lde", std::time::Duration::from_secs(60));
    assert_eq!(out.status, Some(130), "{out:?}");
    assert!(out.stderr.contains("lde: interrupted by signal 15"), "{out:?}");
}

#[test]
fn cpus_out_of_range_are_usage_errors() {
    for args in [&["run", "--cpus", "0", "hello"][..], &["run", "--cpus", "9", "hello"]] {
        let out = lde(args);
        assert_eq!(out.status, Some(2), "{args:?}: {out:?}");
        assert!(one_line(&out.stderr).starts_with("lde: "), "{args:?}: {out:?}");
    }
}
