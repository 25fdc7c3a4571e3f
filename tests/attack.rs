//! Ring-3 programs that attack the kernel's entry contract (`arch/x86_64/entry.rs`): each sets
//! one RFLAGS bit a process controls (DF, AC, TF, NT) and then enters the kernel through every
//! way there is — `syscall` and `int 0x80` making a `spawn` (whose copy of the program spec ran
//! backwards under DF=1 and wrecked the kernel stack), a fault, and timer ticks while it spins.
//! Every attacker must end with its own line while the kernel carries on, under KVM and under
//! QEMU TCG (the reference for exact x86 behaviour).

mod common;

use common::{assert_no_leak, hosts, Host};

const FLAGS: [&str; 4] = ["df", "ac", "tf", "nt"];
const ENTRIES: [&str; 5] = ["none", "syscall", "int80", "fault", "timer"];

/// What a flag is expected to look like after a kernel entry and return on `host`.
fn kept(host: Host, flag: &str) -> &'static str {
    // PVM drops a ring-3 NT on every entry and return (docs/platform.md); x86 keeps it.
    if flag == "nt" && host.recovers_doors() {
        "lost"
    } else {
        "kept"
    }
}

#[test]
fn hostile_flags_reach_every_entry_and_the_kernel_carries_on() {
    for host in hosts("hostile_flags_reach_every_entry_and_the_kernel_carries_on") {
        for flag in FLAGS {
            // One run per flag: 5 attackers, each `syscall`/`int80` one spawns a hello, and a
            // final hello; well within the 16 process slots, so no spawn can fail for room.
            let specs: Vec<String> = ENTRIES.iter().map(|e| format!("hostile {flag} {e}")).collect();
            let mut args: Vec<&str> = vec!["--timer-hz", "500"];
            args.extend(specs.iter().map(String::as_str));
            args.push("hello");
            let out = host.run(&args);
            let lines = out.lines();
            let mut hellos = 1;
            for (i, entry) in ENTRIES.iter().enumerate() {
                let pid = i + 1;
                let exited = format!("exit pid={pid} name=hostile status=");
                let killed = |trap: &str| format!("killed pid={pid} name=hostile trap={trap} ");
                let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
                match (flag, *entry) {
                    (_, "fault") => assert!(has(&killed("#UD")), "{host:?} {flag} {entry}: {out:?}"),
                    ("tf", "none") => {
                        // The single-step trap fires after the instruction that follows popfq.
                        assert!(has(&killed("#DB")), "{host:?} {flag} {entry}: {out:?}")
                    }
                    ("tf", "syscall" | "int80") => {
                        assert!(has(&killed("#DB")), "{host:?} {flag} {entry}: {out:?}");
                        hellos += 1;
                    }
                    ("tf", "timer") => assert!(has(&killed("#DB")), "{host:?} {flag} {entry}: {out:?}"),
                    (_, "timer") => {
                        let line = format!("hostile: {flag} timer: survived 50 ms of ticks");
                        assert!(lines.contains(&line.as_str()), "{host:?} {flag}: {out:?}");
                        assert!(has(&format!("{exited}0")), "{host:?} {flag} {entry}: {out:?}");
                    }
                    (_, "none") => {
                        let line = format!("hostile: {flag} none: spawn returned 1, {flag} kept");
                        assert!(lines.contains(&line.as_str()), "{host:?}: {out:?}");
                    }
                    (_, door) => {
                        let prefix = format!("hostile: {flag} {door}: spawn returned ");
                        let line = out.line_starting(&prefix).unwrap_or_else(|| panic!("{host:?}: {out:?}"));
                        let suffix = format!(", {flag} {}", kept(host, flag));
                        assert!(line.ends_with(&suffix), "{host:?}: {line}");
                        let pid: i64 = line[prefix.len()..line.len() - suffix.len()].parse().unwrap();
                        assert!(pid > ENTRIES.len() as i64, "{host:?}: {line}");
                        hellos += 1;
                    }
                }
            }
            let hello_exits = lines.iter().filter(|l| l.starts_with("exit ") && l.ends_with(" name=hello status=0"));
            assert_eq!(hello_exits.count(), hellos, "{host:?} {flag}: {out:?}");
            assert!(
                lines.contains(&"kernel: all processes ended, shutting down with code 1"),
                "{host:?} {flag}: the kernel must end normally: {out:?}"
            );
            assert_eq!(out.status, Some(1), "{host:?} {flag}: {out:?}");
            assert_no_leak(&out);
        }
    }
}

#[test]
fn segment_bases_are_switched_with_the_process() {
    for host in hosts("segment_bases_are_switched_with_the_process") {
        let out = host.run(&["fsgs 4369 50", "fsgs 8738 50"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let refused = "fsgs: ring 3 cannot write the segment bases here (#UD)";
        let lines = out.lines();
        if lines.contains(&refused) {
            // Then neither process could change them (QEMU TCG: CR4.FSGSBASE is clear).
            assert_eq!(lines.iter().filter(|l| **l == refused).count(), 2, "{host:?}: {out:?}");
            assert!(!host.recovers_doors(), "PVM lets ring 3 write the bases: {out:?}");
        } else {
            for pattern in ["0x1111", "0x2222"] {
                let line = format!("fsgs: {pattern}: bases checked after 50 yields, 0 wrong");
                assert!(lines.contains(&line.as_str()), "{host:?}: {out:?}");
            }
        }
    }
}
