//! Boots the very same kernel under QEMU with TCG (the reference for exact x86 behaviour)
//! through scripts/qemu.sh.

mod common;

use common::{qemu, qemu_available};

#[test]
fn qemu_boots_the_same_kernel() {
    if !qemu_available("qemu_boots_the_same_kernel") {
        return;
    }
    let out = qemu(&["--cmdline", "hello=world"]);
    assert_eq!(out.status, Some(0), "{out:?}");
    let banner = out.line_starting("lde kernel ").unwrap_or_else(|| panic!("no banner: {out:?}"));
    assert!(banner.contains("cmdline \"lde.run=hello ") && banner.contains(" hello=world"), "{banner}");
    assert!(banner.contains("hypervisor TCGTCGTCGTCG"), "really under TCG: {banner}");
    assert!(out.lines().contains(&"kernel: all processes ended, shutting down with code 0"), "{out:?}");
}

#[test]
fn qemu_passes_the_panic_code_through() {
    if !qemu_available("qemu_passes_the_panic_code_through") {
        return;
    }
    let out = qemu(&["-q", "--cmdline", "lde.test=panic"]);
    assert_eq!(out.status, Some(3), "{out:?}");
    assert!(out.stdout.contains("kernel panic: "), "{out:?}");
}

#[test]
fn qemu_triple_fault_is_a_crash() {
    if !qemu_available("qemu_triple_fault_is_a_crash") {
        return;
    }
    let out = qemu(&["-q", "--cmdline", "lde.test=triple-fault"]);
    assert_eq!(out.status, Some(70), "{out:?}");
    assert!(out.stderr.contains("guest crashed"), "{}", out.stderr);
}
