//! Ring-3 programs that attack the kernel's entry contract (`arch/x86_64/entry.rs`): each sets
//! one RFLAGS bit a process controls (DF, AC, TF, NT) and then enters the kernel through every
//! way there is — `syscall` and `int 0x80` making a `spawn` (whose copy of the program spec ran
//! backwards under DF=1 and wrecked the kernel stack), a fault, and timer ticks while it spins.
//! Every attacker must end with its own line while the kernel carries on, under KVM and under
//! QEMU TCG (the reference for exact x86 behaviour).

mod common;

use common::{acct_all, assert_no_leak, hosts, num, Host, Output};

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
                        // And ticks did come while it spun with the flag set (50 ms is many
                        // periods at any rate the kernel keeps; a tick the host delays until
                        // the vCPU runs again still finds it spinning).
                        let acct = acct_all(&out, "hostile").into_iter().find(|a| a["pid"] == pid.to_string());
                        let acct = acct.unwrap_or_else(|| panic!("{host:?} {flag}: no acct for pid {pid}: {out:?}"));
                        assert!(num(&acct, "ticks") >= 1, "{host:?} {flag}: no tick reached it: {acct:?}");
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
        assert_no_leak(&out);
    }
}

#[test]
fn the_kernels_lines_start_a_line_of_their_own() {
    for host in hosts("the_kernels_lines_start_a_line_of_their_own") {
        let out = host.run(&["hostile unfinished"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        let lines = out.lines();
        assert!(lines.contains(&"hostile: no newline here, exit pid=1 name=hostile status=7"), "{host:?}: {out:?}");
        assert!(lines.contains(&"exit pid=1 name=hostile status=0"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn the_runaway_watchdog_kills_a_process_that_never_calls_the_kernel() {
    for host in hosts("the_runaway_watchdog_kills_a_process_that_never_calls_the_kernel") {
        let out = host.run(&["--timer-hz", "1000", "--cmdline", "lde.runaway_ms=30", "spin 0", "hello"]);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        assert!(out.line_starting("killed pid=1 name=spin trap=TIMER ").is_some(), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

/// Random code with random registers, flags and stack: `chaos N SEED` under each host. Every
/// process must end with its own line and the kernel must end the run normally with no frame
/// left in use. `LDE_CHAOS=N` (processes per seed) and `LDE_CHAOS_SEEDS=a,b,…` run longer.
#[test]
fn random_code_in_ring_3_crashes_nothing() {
    let per_seed: u64 = std::env::var("LDE_CHAOS").ok().and_then(|n| n.parse().ok()).unwrap_or(150);
    let seeds: Vec<u64> = std::env::var("LDE_CHAOS_SEEDS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().parse().expect("LDE_CHAOS_SEEDS: numbers")).collect())
        .unwrap_or_else(|| vec![1, 2]);
    for host in hosts("random_code_in_ring_3_crashes_nothing") {
        for &seed in &seeds {
            let spec = format!("chaos {per_seed} {seed}");
            let out = host.run(&["--timer-hz", "1000", "--cmdline", "lde.runaway_ms=20 lde.input=none", &spec]);
            let context = format!("{host:?} chaos {per_seed} {seed}");
            let lines = out.lines();
            let started = format!("chaos: started {per_seed} processes from seed {seed}");
            assert!(lines.contains(&started.as_str()), "{context}: {out:?}");
            let mut ended: Vec<u64> = lines
                .iter()
                .filter(|l| (l.starts_with("exit pid=") || l.starts_with("killed pid=")) && l.contains(" name=chaos "))
                .map(|l| l.split_whitespace().nth(1).unwrap()["pid=".len()..].parse().unwrap())
                .collect();
            ended.sort_unstable();
            let expected: Vec<u64> = (1..=per_seed + 1).collect();
            assert_eq!(ended, expected, "{context}: every process ends once, with its own line");
            assert!(
                lines.iter().any(|l| l.starts_with("kernel: all processes ended, shutting down with code ")),
                "{context}: {out:?}"
            );
            assert!(matches!(out.status, Some(0 | 1)), "{context}: {out:?}");
            assert_no_leak(&out);
        }
    }
}

/// (ticks, periods): the ticks the run counted, and the timer periods from its start to its
/// stop at the rate the kernel reports (`stats: sched`), less those up to the last tick that had
/// no tick of their own (`missed`: the host did not run the vCPU).
fn ticks_and_periods(out: &Output) -> (u64, u64) {
    let sched = common::stats(out, "sched");
    let periods = sched["timer_ms"] * sched["timer_hz"] / 1000;
    (sched["ticks"], periods.saturating_sub(sched["missed"]))
}

#[test]
fn an_unexpected_interrupt_is_acknowledged_and_the_timer_goes_on() {
    for host in hosts("an_unexpected_interrupt_is_acknowledged_and_the_timer_goes_on") {
        // Vector 0x50 outranks the timer's 0x20: left without an EOI it would block every tick
        // (QEMU shows it; PVM's LAPIC does not block, see docs/platform.md). The hook sends it at
        // boot, before the timer starts, so it is taken before any tick.
        let out = host.run(&["--cmdline", "lde.test=stray-interrupt", "spin 100"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.line_starting("kernel: unexpected interrupt 80 at rip ").is_some(), "{host:?}: {out:?}");
        // Counted as its own vector (it has no IDT gate: it arrives as a #GP or #NP with EXT
        // set), and no fault of the process it interrupted.
        let traps = out.line_starting("stats: traps ").unwrap();
        assert!(traps.split_whitespace().any(|w| w.starts_with("80:") && w.ends_with("=1")), "{host:?}: {traps}");
        assert!(!traps.contains(" 13:") && !traps.contains(" 11:"), "{host:?}: {traps}");
        // Ticks came, and went on to the end: every period but the last partial one, up to when
        // the timer stopped, had its tick or is one the host made the guest miss (a timer that
        // stopped early would leave the periods after its last tick uncounted).
        let (ticks, periods) = ticks_and_periods(&out);
        assert!(ticks >= 1, "{host:?}: no tick after the stray interrupt: {out:?}");
        assert!(ticks + 1 >= periods, "{host:?}: {ticks} ticks for {periods} periods: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn an_int80_across_a_page_boundary_is_served() {
    // Where `int 0x80` arrives as #UD (PVM), the kernel reads the instruction's two bytes to know
    // it; here they lie on two pages, the second of which the #UD does not vouch for.
    for host in hosts("an_int80_across_a_page_boundary_is_served") {
        let out = host.run(&["straddle"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.stdout.contains("(page offset 0xfff) returned 1, getpid 1"), "{host:?}: {out:?}");
        let doors = common::stats(&out, "doors");
        let int80 = if host.recovers_doors() { "int80.recovered" } else { "int80.arch" };
        assert_eq!(doors[int80], 1, "{host:?}: {doors:?}");
    }
}

#[test]
fn int_on_a_vector_ring3_may_not_use_kills_and_is_no_interrupt() {
    // Vectors with a DPL-0 gate (timer 32, UART 36, spurious 255) and without any gate (33, 80,
    // 129, 254): `int n` is the process's fault, never mistaken for a device's interrupt on a
    // gateless vector, which arrives as the same #GP.
    for host in hosts("int_on_a_vector_ring3_may_not_use_kills_and_is_no_interrupt") {
        let vectors = [32, 33, 36, 80, 129, 254, 255];
        let specs: Vec<String> = vectors.iter().map(|v| format!("bad-int {v}")).collect();
        let mut args: Vec<&str> = specs.iter().map(String::as_str).collect();
        args.push("hello");
        let out = host.run(&args);
        assert_eq!(out.status, Some(1), "{host:?}: {out:?}");
        // PVM delivers `int n` from ring 3 as #UD at the instruction (docs/platform.md).
        let trap = if host.recovers_doors() { "#UD" } else { "#GP" };
        for (i, v) in vectors.iter().enumerate() {
            let killed = format!("killed pid={} name=bad-int trap={trap} rip=", i + 1);
            assert!(out.line_starting(&killed).is_some(), "{host:?} vector {v}: {out:?}");
        }
        assert!(!out.stdout.contains("unexpected interrupt"), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=8 name=hello status=0"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn frames_are_zero_whatever_the_loader_left_in_ram() {
    for host in hosts("frames_are_zero_whatever_the_loader_left_in_ram") {
        // QEMU leaves firmware tables in RAM the kernel takes for frames; page tables built
        // from them crashed the kernel at once with 16 MiB. lde's RAM is fresh, so there the
        // dirty-ram hook fills it with 0xa5 before loading and promises nothing: the kernel
        // must zero every frame, and `fresh check` finds none of the pattern in its pages.
        let cmdline = match host {
            Host::Kvm | Host::Nested => "lde.test=dirty-ram lde.input=none",
            Host::Qemu => "lde.input=none",
        };
        let out = host.run(&["--mem", "16", "--cmdline", cmdline, "fresh check", "chaos 100 3", "hello"]);
        let lines = out.lines();
        if matches!(host, Host::Kvm | Host::Nested) {
            assert!(lines.contains(&"kernel: test hook: RAM was left dirty by the loader"), "{out:?}");
            let banner = out.line_starting("lde kernel ").unwrap_or_else(|| panic!("{out:?}"));
            assert!(!banner.contains("lde.zeroed_ram=1"), "nothing promised: {banner}");
        }
        let check = out.line_starting("fresh: ").unwrap_or_else(|| panic!("{host:?}: {out:?}"));
        assert!(check.contains(" bytes checked, 0 not zero "), "{host:?}: {check}");
        assert!(lines.contains(&"exit pid=1 name=fresh status=0"), "{host:?}: {out:?}");
        assert!(lines.contains(&"exit pid=3 name=hello status=0"), "{host:?}: {out:?}");
        assert!(lines.contains(&"kernel: all processes ended, shutting down with code 1"), "{host:?}: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn the_timer_cannot_livelock_the_guest() {
    for host in hosts("the_timer_cannot_livelock_the_guest") {
        // At 5,000 Hz and more a tick and a switch outlasted the period on PVM: no process
        // made progress until the timeout. The kernel lowers the rate to what the host allows.
        let out = host.run(&["--timeout", "60", "--timer-hz", "10000", "spin 200", "hello"]);
        assert_eq!(out.status, Some(0), "{host:?}: {out:?}");
        assert!(out.lines().contains(&"exit pid=2 name=hello status=0"), "{host:?}: {out:?}");
        let lowered = out.line_starting("kernel: timer lowered from 10000 to ");
        if host.recovers_doors() {
            assert!(lowered.is_some(), "PVM cannot take 10,000 ticks a second: {out:?}");
        }
        let hz = common::stats(&out, "sched")["timer_hz"];
        assert_eq!(hz < 10_000, lowered.is_some(), "{host:?}: the stats page shows the rate in force: {out:?}");
        assert_no_leak(&out);
    }
}

#[test]
fn kernel_text_is_read_only_and_kernel_data_not_executable() {
    for host in hosts("kernel_text_is_read_only_and_kernel_data_not_executable") {
        for (hook, fault) in [
            // Error code 0x3: present, write. 0x11: present, instruction fetch (NX).
            ("write-text", "kernel: fatal trap #PF (vector 14) in ring 0, error 0x3, "),
            ("execute-data", "kernel: fatal trap #PF (vector 14) in ring 0, error 0x11, "),
        ] {
            let out = host.run(&["--cmdline", &format!("lde.test={hook}")]);
            assert_eq!(out.status, Some(3), "{host:?} {hook}: {out:?}");
            assert!(out.line_starting(fault).is_some(), "{host:?} {hook}: {out:?}");
        }
    }
}

#[test]
fn a_kernel_stack_overflow_hits_its_guard_page() {
    for host in hosts("a_kernel_stack_overflow_hits_its_guard_page") {
        let out = host.run(&["--cmdline", "lde.test=stack-overflow"]);
        assert_eq!(out.status, Some(3), "{host:?}: {out:?}");
        let lines = out.lines();
        assert!(lines.contains(&"kernel: the boot stack overflowed into its guard page"), "{host:?}: {out:?}");
        // The #PF cannot be delivered on the overflowed stack: #DF, on its own IST stack.
        assert!(out.line_starting("kernel: fatal trap #DF (vector 8) in ring 0").is_some(), "{host:?}: {out:?}");
        assert!(!out.stdout.contains("without a fault"), "{host:?}: {out:?}");
    }
}
