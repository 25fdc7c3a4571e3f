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
    // The vCPUs that never started sit inside KVM_RUN: the run must still end at the timeout.
    let out = lde(&["run", "-q", "--cpus", "4", "--timeout", "1", "spin 0"]);
    assert_eq!(out.status, Some(124), "{out:?}");
    assert!(out.stderr.contains("lde: timeout: "), "{out:?}");
}

#[test]
fn cpus_out_of_range_or_with_gdb_are_usage_errors() {
    for args in [
        &["run", "--cpus", "0", "hello"][..],
        &["run", "--cpus", "9", "hello"],
        &["run", "--cpus", "2", "--gdb=127.0.0.1:0", "hello"],
    ] {
        let out = lde(args);
        assert_eq!(out.status, Some(2), "{args:?}: {out:?}");
        assert!(one_line(&out.stderr).starts_with("lde: "), "{args:?}: {out:?}");
    }
}
