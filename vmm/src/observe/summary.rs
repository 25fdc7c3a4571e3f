//! The short summary `lde run` prints at the end of a run, from the kernel's stats page.

use lde_abi::stats::{ProcStats, StatsPage, END_EXITED, END_KILLED};
use lde_kcore::trap::mnemonic;

use crate::host::KvmKind;
use crate::observe::recorder::Recorder;
use crate::observe::stats_page::{implausible, IMPLAUSIBLE};

/// Cycles as text with thousands separators.
fn cycles(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Mean of `total / count` in cycles and microseconds, or "n/a".
fn cost(total: u64, count: u64, tsc_hz: u64) -> String {
    if count == 0 || tsc_hz == 0 {
        return "n/a".to_string();
    }
    let mean = total / count;
    format!("{} cycles ({:.1} us, mean of {count})", cycles(mean), mean as f64 * 1e6 / tsc_hz as f64)
}

/// Most processes named one by one in the summary.
const NAMED_PROCESSES: usize = 12;

/// `name pid: how it ended`, for every process (the first few by name).
fn processes_line(page: &StatsPage, processes: &[ProcStats]) -> String {
    let mut named: Vec<String> = processes
        .iter()
        .take(NAMED_PROCESSES)
        .map(|p| {
            let end = match p.end {
                END_EXITED => format!("exit {}", p.end_value),
                END_KILLED => format!("killed {}", mnemonic(u64::from(p.end_value))),
                // Alive: as the kernel last saw it (a process that never ran is `ready`).
                _ => crate::observe::report::state_name(p.state).to_string(),
            };
            format!("{} {} {end}", p.name(), p.pid)
        })
        .collect();
    if processes.len() > NAMED_PROCESSES {
        named.push(format!("and {} more", processes.len() - NAMED_PROCESSES));
    }
    format!("processes: {} started, {} killed: {}", page.spawned, page.kills, named.join(", "))
}

/// `n thing` or `n things`.
/// The disks' line, when the kernel made any request: what moved, and how long each process that
/// used a disk was blocked on it (from submitting each request to running again).
fn disk_line(page: &StatsPage, processes: &[ProcStats]) -> Option<String> {
    if page.disk_requests == 0 {
        return None;
    }
    let ms = |cycles: u64| cycles as f64 * 1e3 / page.tsc_hz.max(1) as f64;
    let blocked: Vec<String> = processes
        .iter()
        .filter(|p| p.disk_requests > 0)
        .map(|p| format!("{} {} {:.3} ms", p.name(), p.pid, ms(p.disk_wait_cycles)))
        .collect();
    Some(format!(
        "disk: {}, {} bytes read, {} written, {}; blocked on it: {}",
        count(page.disk_requests, "request", "requests"),
        page.disk_read_bytes,
        page.disk_write_bytes,
        count(page.disk_interrupts, "interrupt", "interrupts"),
        blocked.join(", ")
    ))
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Warnings that go before the summary (without the `lde: ` prefix): the page is the kernel's
/// to write, and a kernel lde did not build may write anything there. Figures are shown as the
/// kernel wrote them; sums of them saturate at `u64::MAX` rather than wrap.
pub fn warnings(recorder: &Recorder) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(page) = recorder.last.as_deref() {
        let names = implausible(page);
        if !names.is_empty() {
            out.push(format!(
                "warning: the kernel's counters are implausible ({} at {IMPLAUSIBLE} or more, which no kernel reaches): \
                 the figures below are as it wrote them, sums saturated",
                names.join(", ")
            ));
        }
    }
    if recorder.rings_went_back {
        out.push(
            "warning: the kernel's count of events or of ended processes went backwards: its event log is not to be \
             trusted"
                .to_string(),
        );
    }
    out
}

/// The summary lines (without the `lde: ` prefix). `ran` is how long the guest ran as the host
/// saw it, from the kernel's banner to the end: the kernel's own clock in the page stops
/// where the kernel last ran (a process that never enters it holds the clock too).
pub fn lines(page: &StatsPage, processes: &[ProcStats], kvm: KvmKind, ran: Option<f64>) -> Vec<String> {
    let mut traps: Vec<String> = Vec::new();
    // The kernel's figures: summed with saturation (a hostile page must not wrap them).
    let syscalls = page.syscall_arch.saturating_add(page.syscall_recovered);
    let int80 = page.int80_arch.saturating_add(page.int80_recovered);
    let how = |arch: u64, recovered: u64| match (arch, recovered) {
        (_, 0) => "architectural",
        (0, _) => "recovered",
        _ => "mixed",
    };
    if syscalls > 0 {
        traps.push(format!("syscall {syscalls} ({})", how(page.syscall_arch, page.syscall_recovered)));
    }
    if int80 > 0 {
        traps.push(format!("int 0x80 {int80} ({})", how(page.int80_arch, page.int80_recovered)));
    }
    if page.ticks > 0 {
        traps.push(format!("timer {}", page.ticks));
    }
    // Exceptions, less those that were really recovered system calls.
    let mut exceptions = page.traps;
    exceptions[6] = exceptions[6].saturating_sub(page.int80_recovered);
    exceptions[14] = exceptions[14].saturating_sub(page.syscall_recovered);
    for (vector, &n) in exceptions.iter().enumerate().take(32) {
        if n > 0 {
            traps.push(format!("{} {n}", mnemonic(vector as u64)));
        }
    }
    let uptime = page.now_tsc.saturating_sub(page.boot_tsc);
    // Idle time is summed over the processors: a share of all of them.
    let online = page.cpus.iter().filter(|c| c.online != 0).count().max(1);
    let idle = if uptime > 0 { page.idle_cycles as f64 * 100.0 / (uptime as f64 * online as f64) } else { 0.0 };
    let timer = match page.timer_hz {
        0 => "no timer (cooperative)".to_string(),
        hz => format!("{} at {hz} Hz", count(page.ticks, "tick", "ticks")),
    };
    let seconds = uptime as f64 / page.tsc_hz.max(1) as f64;
    let stale = match ran {
        Some(ran) if ran > seconds + 0.5 => {
            format!(" (the kernel's clock stopped there, when it last ran; the guest ran {ran:.1} s)")
        }
        _ => String::new(),
    };
    let mut lines = vec![
        processes_line(page, processes),
        format!("traps: {}", if traps.is_empty() { "none".to_string() } else { traps.join(", ") }),
        format!(
            "scheduler: {timer}, {}, idle {idle:.1}% of {seconds:.3} s guest time{}{stale}",
            count(page.switches, "context switch", "context switches"),
            if online > 1 { format!(" on {online} processors") } else { String::new() },
        ),
        format!(
            "costs on this host ({}): timer tick {} in the kernel; context switch {} in the scheduler",
            kvm.slug(),
            cost(page.tick_cycles, page.tick_count, page.tsc_hz),
            cost(page.switch_cycles, page.switch_count, page.tsc_hz)
        ),
    ];
    lines.extend(disk_line(page, processes));
    if online > 1 {
        lines.extend(cpu_lines(page));
    }
    lines
}

/// One line per processor that ran processes, and the big kernel lock's.
fn cpu_lines(page: &StatsPage) -> Vec<String> {
    let mut lines: Vec<String> = (page.cpus.iter().enumerate())
        .filter(|(_, c)| c.online != 0)
        .map(|(id, c)| format!("cpu {id}: {}", cpu_figures(c, page.tsc_hz)))
        .collect();
    lines.push(format!("big kernel lock: {}", lock_figures(page)));
    lines
}

/// One processor's figures as the summary and `--watch` give them: ticks, switches, ring-3 and
/// idle time, IPIs.
pub fn cpu_figures(c: &lde_abi::stats::CpuStats, tsc_hz: u64) -> String {
    let ms = |cycles: u64| cycles as f64 * 1000.0 / tsc_hz.max(1) as f64;
    format!(
        "{}, {}, user {:.1} ms, idle {:.1} ms, IPIs {} sent, {} received",
        count(c.ticks, "tick", "ticks"),
        count(c.switches, "switch", "switches"),
        ms(c.user_cycles),
        ms(c.idle_cycles),
        c.ipis_sent,
        c.ipis_received
    )
}

/// The big kernel lock's figures and the TLB shootdowns, as the summary and `--watch` give them.
pub fn lock_figures(page: &StatsPage) -> String {
    format!(
        "{} acquisitions, {} contended ({} spins waiting); TLB shootdowns: {}",
        page.lock_acquisitions, page.lock_contended, page.lock_spins, page.tlb_shootdowns
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_a_page() {
        let mut page = StatsPage::new();
        page.tsc_hz = 2_000_000_000;
        page.boot_tsc = 1_000;
        page.now_tsc = 2_000_001_000;
        page.idle_cycles = 500_000_000;
        page.spawned = 3;
        page.kills = 1;
        page.timer_hz = 50;
        page.ticks = 50;
        page.traps[0x20] = 50;
        page.traps[13] = 1;
        page.traps[14] = 7;
        page.syscall_recovered = 7;
        page.tick_cycles = 100_000 * 50;
        page.tick_count = 50;
        page.switches = 9;
        let mut a = ProcStats::EMPTY;
        a.pid = 1;
        a.name[..5].copy_from_slice(b"hello");
        a.end = END_EXITED;
        let mut b = a;
        b.pid = 2;
        b.name[..5].copy_from_slice(b"bad-x");
        b.end = END_KILLED;
        b.end_value = 13;
        let mut c = ProcStats::EMPTY;
        c.pid = 3;
        c.name[..4].copy_from_slice(b"idle");
        c.state = lde_abi::stats::STATE_READY;
        let lines = lines(&page, &[a, b, c], KvmKind::Pvm, Some(1.2));
        assert_eq!(lines[0], "processes: 3 started, 1 killed: hello 1 exit 0, bad-x 2 killed #GP, idle 3 ready");
        assert_eq!(lines[1], "traps: syscall 7 (recovered), timer 50, #GP 1");
        assert_eq!(lines[2], "scheduler: 50 ticks at 50 Hz, 9 context switches, idle 25.0% of 1.000 s guest time");
        assert!(lines[3].contains("(pvm): timer tick 100,000 cycles (50.0 us, mean of 50)"), "{}", lines[3]);
        assert!(lines[3].ends_with("context switch n/a in the scheduler"), "{}", lines[3]);
        page.switches = 1;
        page.timer_hz = 0;
        let lines = super::lines(&page, &[a], KvmKind::Pvm, Some(5.0));
        assert_eq!(
            lines[2],
            "scheduler: no timer (cooperative), 1 context switch, idle 25.0% of 1.000 s guest time (the kernel's \
             clock stopped there, when it last ran; the guest ran 5.0 s)"
        );
    }

    #[test]
    fn a_page_of_maximal_counters_saturates_and_is_flagged() {
        let mut page = StatsPage::new();
        for field in [
            &mut page.syscall_arch,
            &mut page.syscall_recovered,
            &mut page.int80_arch,
            &mut page.int80_recovered,
            &mut page.ticks,
            &mut page.tsc_hz,
            &mut page.now_tsc,
            &mut page.idle_cycles,
            &mut page.tick_cycles,
            &mut page.tick_count,
        ] {
            *field = u64::MAX;
        }
        page.traps = [u64::MAX; 256];
        let max = u64::MAX.to_string();
        let lines = lines(&page, &[], KvmKind::Pvm, Some(1.0));
        assert!(lines[1].contains(&format!("syscall {max} (mixed)")), "{}", lines[1]);
        assert!(lines[1].contains(&format!("int 0x80 {max} (mixed)")), "{}", lines[1]);
        assert!(lines[3].contains("timer tick 1 cycles"), "{}", lines[3]);
        let mut recorder = Recorder::new_for_tests();
        recorder.last = Some(Box::new(page));
        recorder.rings_went_back = true;
        let warnings = warnings(&recorder);
        assert!(warnings[0].contains("implausible (ticks, syscall_arch,"), "{warnings:?}");
        assert!(warnings[1].contains("went backwards"), "{warnings:?}");
    }
}
