//! Ring 3 under both hosts: programs, both system-call doors and their counters, isolation,
//! killing processes that break the rules, the fuzzer, and a corrupt program.
//!
//! Every scenario runs under KVM (`lde run`) and under QEMU TCG (`scripts/qemu.sh`), which is
//! the reference for exact x86 behaviour.

mod common;

use common::{assert_no_leak, hosts, lde, qemu, stats, Host, Output};

#[test]
fn hello_writes_through_both_doors() {
    for host in hosts("hello_writes_through_both_doors") {
        let out = host.run(&["hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let lines = out.lines();
        assert!(lines.contains(&"hello from ring 3 (pid 1), written through syscall"), "{host:?}: {out:?}");
        assert!(lines.contains(&"hello from ring 3 (pid 1), written through int 0x80"), "{host:?}: {out:?}");
        assert!(lines.contains(&"exit pid=1 name=hello status=0"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

/// Every register a system call promises to keep comes back unchanged through both doors,
/// across calls that switch away and back (`yield` beside a ready process, `sleep_ms`) and one
/// that does not (`getpid`): the kernel restores some from the trap frame and leaves the
/// callee-saved ones as its code gave them back (syscall_entry.rs's `syscall_return`).
#[test]
fn system_calls_keep_every_register_they_promise_to() {
    for host in hosts("system_calls_keep_every_register_they_promise_to") {
        let out = host.run(&["regs 20", "counter 30"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"regs: 20 rounds, every register kept"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn each_door_is_counted_by_how_it_arrived() {
    const N: u64 = 500;
    for host in hosts("each_door_is_counted_by_how_it_arrived") {
        let arg = format!("calls {N}");
        let out = host.run(&[&arg]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let line = format!("calls: {N} getpid via syscall and {N} via int 0x80 (pid 1), 0 wrong");
        assert!(out.lines().contains(&line.as_str()), "{host:?}: {out:?}");
        // Through syscall: the first getpid, N getpids, one write, exit. Through int 0x80: N.
        let calls = stats(&out, "calls");
        assert_eq!(calls["getpid"], 2 * N + 1, "{host:?}");
        assert_eq!((calls["write"], calls["exit"]), (1, 1), "{host:?}");
        let doors = stats(&out, "doors");
        let (used, unused) = if host.recovers_doors() { ("recovered", "arch") } else { ("arch", "recovered") };
        assert_eq!(doors[&format!("syscall.{used}")], N + 3, "{host:?}: {doors:?}");
        assert_eq!(doors[&format!("int80.{used}")], N, "{host:?}: {doors:?}");
        assert_eq!(doors[&format!("syscall.{unused}")], 0, "{host:?}: {doors:?}");
        assert_eq!(doors[&format!("int80.{unused}")], 0, "{host:?}: {doors:?}");
    }
}

/// Each restricted-operation program and the trap that must end it.
const RESTRICTED: &[(&str, &str)] = &[
    ("bad-hlt", "#GP"),
    ("bad-cli", "#GP"),
    ("bad-out", "#GP"),
    ("bad-wrmsr", "#GP"),
    ("bad-cr3", "#GP"),
    ("bad-lidt", "#GP"),
    ("bad-kread", "#PF"),
    ("bad-kwrite", "#PF"),
    ("bad-kjump", "#PF"),
    ("bad-null", "#PF"),
    ("bad-div0", "#DE"),
    ("bad-ud2", "#UD"),
    ("bad-int3", "#BP"),
    ("bad-stack", "#PF"),
];

#[test]
fn rule_breakers_are_killed_and_others_carry_on() {
    for host in hosts("rule_breakers_are_killed_and_others_carry_on") {
        // Interleave a well-behaved program with the attackers.
        let mut args: Vec<&str> = Vec::new();
        for (i, (program, _)) in RESTRICTED.iter().enumerate() {
            args.push(program);
            if i % 5 == 0 {
                args.push("hello");
            }
        }
        args.push("calls 10");
        let out = host.run(&args);
        assert_eq!(out.status, Some(1), "a process failed, so the kernel says 1: {host:?}: {out:?}");
        for (program, trap) in RESTRICTED {
            let killed = out
                .lines()
                .into_iter()
                .find(|l| l.starts_with("killed ") && l.contains(&format!(" name={program} ")))
                .unwrap_or_else(|| panic!("{host:?}: {program} was not killed: {out:?}"));
            assert!(killed.contains(&format!(" trap={trap} rip=0x")), "{host:?}: {killed}");
        }
        let hellos = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=hello status=0"));
        assert_eq!(hellos.count(), 3, "{host:?}: {out:?}");
        assert!(!out.stdout.contains("was NOT stopped"), "{host:?}: {out:?}");
        assert!(out.stdout.contains("calls: 10 getpid via syscall and 10 via int 0x80"), "{host:?}");
        let calls = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=calls status=0"));
        assert_eq!(calls.count(), 1, "{host:?}: {out:?}");
        assert_eq!(stats(&out, "sched")["kills"], RESTRICTED.len() as u64, "{host:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn the_fuzzer_never_crashes_the_kernel() {
    for host in hosts("the_fuzzer_never_crashes_the_kernel") {
        // Every call, both doors, DF/AC/NT at random; `spawn` now and then starts a `hello`.
        let out = host.run(&["fuzz 10000 12345", "fuzz 10000 777", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let prefix = "fuzz: 10000 calls, ";
        let results: Vec<&str> = out.lines().into_iter().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(results.len(), 2, "{host:?}: {out:?}");
        assert!(results.iter().all(|l| l.ends_with(" 0 unexpected")), "{host:?}: {results:?}");
        let spawned: usize = results
            .iter()
            .map(|l| l.split(", ").nth(2).unwrap().strip_suffix(" spawned").unwrap().parse::<usize>().unwrap())
            .sum();
        assert!(spawned > 0, "{host:?}: spawn must succeed now and then: {results:?}");
        let hellos = out.lines().into_iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=hello status=0"));
        assert_eq!(hellos.count(), spawned + 1, "{host:?}: every hello the fuzzers started ran: {out:?}");
        let calls = stats(&out, "calls");
        // 3/4 of the 20,000 calls pick one of the 14 numbers at random: ~1,070 each.
        for name in lde_abi::syscall::NAMES {
            assert!(calls[name] >= 700, "{host:?}: every call is fuzzed, {name} too: {calls:?}");
        }
        assert!(stats(&out, "doors").values().sum::<u64>() >= 20_000, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn a_corrupt_program_is_rejected_and_the_rest_run() {
    let dir = std::env::temp_dir().join(format!("lde-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("garbage", b"this is not an ELF file at all, just text; ".repeat(4), "bad ELF: not an ELF file"),
        ("truncated", lde::guest::program("hello").unwrap().elf[..100].to_vec(), "bad ELF: "),
        (
            "kernelspace",
            {
                // A valid program whose first segment claims to load over the kernel.
                let mut elf = lde::guest::program("hello").unwrap().elf.to_vec();
                let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
                elf[phoff + 16..phoff + 24].copy_from_slice(&0x10_0000u64.to_le_bytes());
                elf
            },
            "bad ELF: a segment lies outside user space",
        ),
    ];
    for host in hosts("a_corrupt_program_is_rejected_and_the_rest_run") {
        for (name, bytes, reason) in &cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let out = host.run(&["--program", path.to_str().unwrap(), "hello"]);
            assert_eq!(out.status, Some(1), "{host:?} {name}: {out:?}");
            let failed = out.line_starting("failed ").unwrap_or_else(|| panic!("{host:?} {name}: {out:?}"));
            assert!(failed.starts_with(&format!("failed name={name} reason={reason}")), "{host:?}: {failed}");
            assert!(out.lines().contains(&"exit pid=1 name=hello status=0"), "{host:?} {name}: {out:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn more_programs_than_process_slots_all_run() {
    for host in hosts("more_programs_than_process_slots_all_run") {
        let args = vec!["hello"; 20];
        let out = host.run(&args);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        for pid in 1..=20 {
            let line = format!("exit pid={pid} name=hello status=0");
            assert!(out.lines().contains(&line.as_str()), "{host:?}: missing {line}");
        }
        assert_no_leak(&out);
    }
}

#[test]
fn arguments_reach_the_program() {
    for host in hosts("arguments_reach_the_program") {
        let out = host.run(&["calls 7"]);
        assert!(out.stdout.contains("calls: 7 getpid via syscall and 7 via int 0x80"), "{host:?}: {out:?}");
        let out = host.run(&["calls 5 int80 null"]);
        assert!(out.lines().contains(&"calls: 5 null via int 0x80 (pid 1), 0 wrong"), "{host:?}: {out:?}");
        let calls = stats(&out, "calls");
        assert_eq!((calls["null"], calls["getpid"]), (5, 1), "{host:?}: {out:?}");
        for bad in ["calls seven", "calls 5 sysenter", "calls 5 syscall open"] {
            let out = host.run(&[bad]);
            let usage = "usage: calls [N [syscall|int80|both [getpid|null]]]";
            assert!(out.lines().contains(&usage), "{host:?} {bad}: {out:?}");
            assert_eq!(out.status, Some(1), "{host:?}");
        }
    }
}

#[test]
fn probe_reports_every_door_and_trap() {
    for host in hosts("probe_reports_every_door_and_trap") {
        let out = match host {
            Host::Kvm | Host::Nested => lde(&["probe"]),
            Host::Qemu => qemu(&["--probe"]),
        };
        assert_probe(&out, host);
    }
}

fn assert_probe(out: &Output, host: Host) {
    assert_eq!(out.status, Some(0), "{out:?}");
    let expected_door = if host.recovers_doors() { "recovered: " } else { "architectural" };
    for (row, delivery) in [
        ("syscall ", expected_door),
        ("int 0x80 ", expected_door),
        ("#UD (ud2) ", "architectural"),
        ("#BP (int3) ", "architectural"),
        ("#GP (cli) ", "architectural"),
        ("#PF (read of a supervisor page) ", "architectural"),
        ("#DE (divide by zero) ", "architectural"),
    ] {
        let line = out.line_starting(row).unwrap_or_else(|| panic!("no row {row}: {out:?}"));
        assert!(line.trim_start_matches(row).trim_start().starts_with(delivery), "{line}");
    }
    let named = out.line_starting("host: ").unwrap_or_else(|| panic!("no host line: {out:?}"));
    if host == Host::Nested {
        assert!(named.starts_with("host: nested KVM (Svm exposed by an outer hypervisor)"), "{named}");
    }
    // lde never enables AVX: an x86 CPU then refuses it in ring 3; PVM lets ring 3 use it and
    // the probe must name the leak.
    let avx = out.line_starting("AVX state ").unwrap_or_else(|| panic!("no AVX row: {out:?}"));
    let expected = if host.recovers_doors() { "DEVIATION: " } else { "not available to ring 3" };
    assert!(avx.trim_start_matches("AVX state ").trim_start().starts_with(expected), "{host:?}: {avx}");
    for row in ["SMEP ", "UMIP ", "SMAP "] {
        assert!(out.line_starting(row).is_some(), "no row {row}: {out:?}");
    }
    // Several processors, on lde's own probe VM (QEMU's transcript has none): measured on PVM
    // and on the nested SVM host, both start the second vCPU and deliver the IPI.
    if host != Host::Qemu {
        let smp = out.line_starting("smp: ").unwrap_or_else(|| panic!("no smp line: {out:?}"));
        assert!(smp.starts_with("smp: INIT-SIPI-SIPI started the second vCPU ("), "{host:?}: {smp}");
        assert!(smp.contains(", a fixed IPI reached it") && !smp.contains("(vCPU "), "{host:?}: {smp}");
    }
}

#[test]
fn wait_reports_each_child_as_it_ends_then_echild() {
    for host in hosts("wait_reports_each_child_as_it_ends_then_echild") {
        // Its children: one sleeping 100 ms (pid 2), one exiting (3), one killed by #UD (4);
        // the order the kernel ended them in is what `wait` must report.
        let out = host.run(&["waiter"]);
        assert_eq!(out.status, Some(1), "one child is killed: {host:?}: {out:?}");
        let lines = out.lines();
        assert!(lines.contains(&"waiter: no child yet: wait returned -10"), "{host:?}: {out:?}");
        for (spec, pid) in [("waiter sleep 100", 2), ("waiter exit", 3), ("waiter ud2", 4)] {
            assert!(lines.contains(&format!("waiter: spawned {spec}: {pid}").as_str()), "{host:?}: {out:?}");
        }
        let pid_after = |l: &str, prefix: &str| l.strip_prefix(prefix)?.split(' ').next()?.parse::<u32>().ok();
        let ended: Vec<u32> = lines
            .iter()
            .filter_map(|l| pid_after(l, "exit pid=").or_else(|| pid_after(l, "killed pid=")))
            .filter(|&pid| pid != 1)
            .collect();
        let reported: Vec<u32> = lines.iter().filter_map(|l| pid_after(l, "waiter: pid ")).collect();
        assert_eq!(ended.len(), 3, "{host:?}: {out:?}");
        assert_eq!(reported, ended, "{host:?}: in the order they ended: {out:?}");
        let last = "waiter: 3 started, 3 reported, then -10, again -10, 0 wrong";
        assert!(lines.contains(&last), "{host:?}: {out:?}");
        assert!(lines.contains(&"exit pid=1 name=waiter status=0"), "{host:?}: {out:?}");
        assert!(out.line_starting("killed pid=4 name=waiter trap=#UD ").is_some(), "{host:?}: {out:?}");
        // The first, one per child, the -ECHILD that ended the loop, the one through int 0x80.
        assert_eq!(stats(&out, "calls")["wait"], 6, "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn every_bad_argument_gets_its_error_code() {
    for host in hosts("every_bad_argument_gets_its_error_code") {
        let out = host.run(&["bad-args", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"bad-args: 34 checks, 0 wrong"), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: {out:?}");
    }
}

#[test]
fn a_killed_process_fails_the_run_after_its_slot_is_reused() {
    for host in hosts("a_killed_process_fails_the_run_after_its_slot_is_reused") {
        // The killed process's slot is reused by later programs before the run ends.
        let mut args = vec!["bad-ud2"];
        args.extend(["hello"; 20]);
        let out = host.run(&args);
        assert!(out.line_starting("killed pid=1 name=bad-ud2 trap=#UD ").is_some(), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=21 name=hello status=0"), "{host:?}: {out:?}");
        assert_eq!(out.status, Some(1), "{host:?}: a process was killed: {out:?}");
    }
}
