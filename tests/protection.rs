//! The kernel's CPU protections and its doors self-test, under KVM and QEMU TCG: SMEP (ring 0
//! never runs a user page) and UMIP (ring 3 cannot read the descriptor-table addresses) are on
//! wherever the CPU offers them and hold; the PVM recovery paths are served only where the boot
//! self-test found the host needs them, and a jump to the kernel's `syscall` entry is killed
//! with its page fault instead of being served as a system call.

mod common;

use common::{hosts, qemu_available, qemu_with_args, Host, Output};
use lde_abi::cmdline::HOST_NMI_COUNT;

/// The `key=value` words of the `stats: protection` line.
fn protection(out: &Output) -> std::collections::HashMap<String, String> {
    let line = out.line_starting("stats: protection ").unwrap_or_else(|| panic!("no protection line: {out:?}"));
    line.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Whether the host CPU offers `flag` (as /proc/cpuinfo names it).
fn host_cpu_has(flag: &str) -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines().find(|l| l.starts_with("flags")).is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

const SMEP_FAULT: &str = "kernel: fatal trap #PF (vector 14) in ring 0, error 0x11, rip 0x8000000000, ";
const RAN_IN_RING0: &str = "kernel: test hook: the user page ran in ring 0 (no SMEP)";

#[test]
fn the_doors_self_test_finds_how_this_host_delivers_system_calls() {
    for host in hosts("the_doors_self_test_finds_how_this_host_delivers_system_calls") {
        let out = host.run(&["hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let expect = if host.recovers_doors() { "recovered" } else { "architectural" };
        let p = protection(&out);
        assert_eq!(p["syscall"], expect, "{host:?}: {out:?}");
        assert_eq!(p["int80"], expect, "{host:?}: {out:?}");
        // hello's own calls, all through the door the self-test found; the test's own two
        // traps are not counted anywhere.
        let doors = common::stats(&out, "doors");
        let short = if expect == "recovered" { "recovered" } else { "arch" };
        assert_eq!(doors[&format!("syscall.{short}")], 3, "{host:?}: {out:?}");
        assert_eq!(doors[&format!("int80.{short}")], 1, "{host:?}: {out:?}");
        // Timer ticks may come on a slow or loaded host (hello outlives a 50 Hz period there),
        // and so may the one serial interrupt by which lde says that its input (here none) has
        // ended, when its event loop gets to it only after hello started.
        let traps = out.line_starting("stats: traps").unwrap();
        let traps: Vec<&str> =
            traps.split_whitespace().skip(2).filter(|t| !t.starts_with("32:TIMER=") && *t != "36:SERIAL=1").collect();
        if expect == "recovered" {
            assert_eq!(traps, ["6:#UD=1", "14:#PF=3"], "{host:?}: {out:?}");
        } else {
            assert_eq!(traps, ["128:INT80=1"], "{host:?}: {out:?}");
        }
    }
}

#[test]
fn a_forged_jump_to_the_syscall_entry_is_killed_with_its_page_fault() {
    let lstar = lde::elf::find_symbol(lde::guest::KERNEL, "syscall_entry").unwrap().expect("syscall_entry symbol");
    for host in hosts("a_forged_jump_to_the_syscall_entry_is_killed_with_its_page_fault") {
        // RCX, R11, EAX and EDI hold what a real `syscall` asking for exit(42) would leave.
        let out = host.run(&[&format!("bad-kjump {lstar}"), "hello"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        let killed = format!("killed pid=1 name=bad-kjump trap=#PF rip={lstar:#x}");
        assert!(out.lines().contains(&killed.as_str()), "{host:?}: {out:?}");
        assert!(out.line_starting("exit pid=1 ").is_none(), "{host:?}: served as exit(42): {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: {out:?}");
        // Only the real calls are counted: bad-kjump's one write, hello's four.
        let calls = common::stats(&out, "calls");
        assert_eq!((calls["write"], calls["exit"]), (3, 1), "{host:?}: {out:?}");
        let doors = common::stats(&out, "doors");
        assert_eq!(doors.values().sum::<u64>(), 5, "{host:?}: {out:?}");
        common::assert_no_leak(&out);
    }
}

#[test]
fn smep_and_umip_are_on_where_the_cpu_offers_them_and_hold() {
    for host in hosts("smep_and_umip_are_on_where_the_cpu_offers_them_and_hold") {
        // QEMU's `-cpu max` offers both; under KVM the guest sees the host CPU's.
        let (smep, umip) = match host {
            Host::Qemu => (true, true),
            Host::Kvm | Host::Nested => (host_cpu_has("smep"), host_cpu_has("umip")),
        };
        let out = host.run(&["--cmdline", "lde.test=execute-user"]);
        if smep {
            assert_eq!(out.status, Some(3), "{host:?}: {out:?}");
            assert!(out.line_starting(SMEP_FAULT).is_some(), "{host:?}: {out:?}");
        } else {
            assert!(out.lines().contains(&RAN_IN_RING0), "{host:?}: {out:?}");
        }
        let out = host.run(&["bad-sgdt"]);
        let p = protection(&out);
        assert_eq!(p["smep"], if smep { "on" } else { "off" }, "{host:?}: {out:?}");
        assert_eq!(p["umip"], if umip { "on" } else { "off" }, "{host:?}: {out:?}");
        if umip {
            assert!(out.line_starting("killed pid=1 name=bad-sgdt trap=#GP ").is_some(), "{host:?}: {out:?}");
        } else {
            assert!(out.lines().contains(&"exit pid=1 name=bad-sgdt status=1"), "{host:?}: {out:?}");
        }
    }
}

#[test]
fn without_smep_and_umip_the_same_checks_see_the_difference() {
    if !qemu_available("without_smep_and_umip_the_same_checks_see_the_difference") {
        return;
    }
    // The same kernel on a CPU that offers neither: it must say so, and the hook and program
    // that fault above now run (so the checks above can tell the two apart).
    let cpu = "-cpu max,-smep,-umip";
    let out = qemu_with_args(cpu, &["-q", "--kernel-stats", "--cmdline", "lde.test=execute-user", "bad-sgdt"]);
    assert!(out.lines().contains(&RAN_IN_RING0), "{out:?}");
    assert!(out.lines().contains(&"bad-sgdt: sgdt was NOT stopped"), "{out:?}");
    let p = protection(&out);
    assert_eq!((p["smep"].as_str(), p["umip"].as_str()), ("off", "off"), "{out:?}");
}

#[test]
fn host_nmis_are_counted_and_blame_no_process() {
    // lde's side of the hook (QEMU has no equivalent here): an NMI every millisecond while two
    // processes spin in ring 3 and a third makes system calls. NMIs cannot be masked, so they
    // land in ring 3 and in the kernel alike; none may kill a process or the kernel.
    if !common::kvm_available("host_nmis_are_counted_and_blame_no_process") {
        return;
    }
    let mut cmd = std::process::Command::new(common::lde_bin());
    cmd.args(["run", "-q", "--kernel-stats", "--timeout", "100", "--timer-hz", "200"])
        .args(["--cmdline", "lde.test=host-nmi", "spin 300", "hello", "spin 200"])
        .env("LDE_LOG", "info");
    let out = common::run_with_deadline(cmd, std::time::Duration::from_secs(120));
    assert_eq!(out.status, Some(0), "{out:?}");
    assert!(out.lines().contains(&"kernel: test hook: expecting NMIs from the host"), "{out:?}");
    for (pid, name) in [(1, "spin"), (2, "hello"), (3, "spin")] {
        let exit = format!("exit pid={pid} name={name} status=0");
        assert!(out.lines().contains(&exit.as_str()), "{out:?}");
    }
    let traps = out.line_starting("stats: traps ").unwrap();
    let nmis: u64 = traps
        .split_whitespace()
        .find_map(|w| w.strip_prefix("2:NMI="))
        .unwrap_or_else(|| panic!("no NMI counted: {traps}"))
        .parse()
        .unwrap();
    // The kernel waits for this many before it shuts down (the host may merge some it sends
    // while the vCPU does not run): the count does not depend on the host's speed or load.
    let waited = format!("kernel: test hook: at least {HOST_NMI_COUNT} NMIs counted");
    assert!(out.lines().contains(&waited.as_str()), "{out:?}");
    assert!(nmis >= HOST_NMI_COUNT, "{nmis} NMIs: {out:?}");
    // And never more than lde sent.
    let sent: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("lde: info: test hook: sent the guest ")?.strip_suffix(" NMIs")?.parse().ok())
        .unwrap_or_else(|| panic!("lde says how many NMIs it sent: {}", out.stderr));
    assert!(nmis <= sent, "{nmis} NMIs counted, {sent} sent");
    assert_eq!(common::stats(&out, "sched")["kills"], 0, "{out:?}");
    common::assert_no_leak(&out);
}

#[test]
fn a_large_bss_is_mapped_on_first_touch_reads_zero_and_cannot_exhaust_the_kernel() {
    for host in hosts("a_large_bss_is_mapped_on_first_touch_reads_zero_and_cannot_exhaust_the_kernel") {
        // Each bigbss has a 64 MiB BSS, more than two of them fit in 128 MiB if mapped at load;
        // the second reuses (and must see zeroed) the frames the first dirtied.
        let out = host.run(&["bigbss 8", "bigbss 8", "bigbss", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let lines = out.lines();
        assert_eq!(
            lines.iter().filter(|l| **l == "bigbss: touched 8 MiB of 64, 0 bytes not zero").count(),
            2,
            "{out:?}"
        );
        assert!(lines.contains(&"bigbss: touched 0 MiB of 64, 0 bytes not zero"), "{host:?}: {out:?}");
        common::assert_no_leak(&out);

        // Touching more than there is: the process dies of its #PF, the kernel and the next
        // program carry on, and every frame comes back.
        let out = host.run(&["--mem", "32", "bigbss 60", "hello"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        assert!(out.line_starting("killed pid=1 name=bigbss trap=#PF ").is_some(), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: {out:?}");
        common::assert_no_leak(&out);
    }
}
