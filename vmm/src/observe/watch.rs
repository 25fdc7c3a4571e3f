//! `lde run --watch`: a live table of the kernel's counters while the guest runs. On a terminal
//! it redraws in place with the tail of the guest's output below it; piped, it prints one
//! status line a second.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use crate::devices::serial::SharedBuffer;
use crate::observe::monitor::{Live, Observer};

/// Lines of guest output shown under the table.
const TAIL_LINES: usize = 10;
/// Least time between two redraws.
const REDRAW: Duration = Duration::from_millis(250);
/// Time between two status lines when piped.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The table as text.
pub fn table(live: &Live, kvm: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "lde watch: {:.2} s on {kvm}", live.elapsed.as_secs_f64());
    let Some(page) = live.recorder.last.as_deref() else {
        let _ = writeln!(out, "(no counters yet)");
        return out;
    };
    let _ = writeln!(
        out,
        "doors   syscall {} arch / {} recovered   int 0x80 {} arch / {} recovered",
        page.syscall_arch, page.syscall_recovered, page.int80_arch, page.int80_recovered
    );
    let exceptions: Vec<String> = (0..32)
        .filter(|&v| page.traps[v] != 0)
        .map(|v| format!("{} {}", lde_kcore::trap::mnemonic(v as u64), page.traps[v]))
        .collect();
    let _ = writeln!(out, "traps   timer {}   {}", page.ticks, exceptions.join("   "));
    let _ = writeln!(
        out,
        "sched   {} Hz, {} switches, {} spawned, {} killed, events {} (lost {})",
        page.timer_hz,
        page.switches,
        page.spawned,
        page.kills,
        live.recorder.events_written(),
        live.recorder.events_lost
    );
    let e = live.exits;
    let _ = writeln!(
        out,
        "exits   {} to lde (io out {}, io in {}, mmio {}, other {})",
        e.total(),
        e.io_out,
        e.io_in,
        e.mmio,
        e.other
    );
    let _ = writeln!(
        out,
        "{:>5} {:<16} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
        "PID", "NAME", "STATE", "TICKS", "SCHED", "VOL", "INVOL", "SYSCALLS", "FAULTS"
    );
    for p in page.procs.iter().filter(|p| p.pid != 0) {
        let state = crate::observe::report::state_name(p.state);
        let _ = writeln!(
            out,
            "{:>5} {:<16} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
            p.pid,
            p.name(),
            state,
            p.ticks,
            p.scheduled,
            p.voluntary,
            p.involuntary,
            p.syscalls.iter().sum::<u64>(),
            p.faults
        );
    }
    out
}

/// One status line (for a pipe).
pub fn status_line(live: &Live) -> String {
    match live.recorder.last.as_deref() {
        Some(p) => format!(
            "lde: watch {:.1} s: ticks={} switches={} syscalls={} kills={} exits={}",
            live.elapsed.as_secs_f64(),
            p.ticks,
            p.switches,
            p.calls.iter().sum::<u64>(),
            p.kills,
            live.exits.total()
        ),
        None => format!("lde: watch {:.1} s: no counters yet", live.elapsed.as_secs_f64()),
    }
}

/// An observer that redraws the table on the terminal (stderr), with the tail of `captured`.
pub fn terminal(kvm: &'static str, captured: SharedBuffer) -> Observer {
    let mut last: Option<Duration> = None;
    Box::new(move |live: &Live| {
        if last.is_some_and(|t| live.elapsed < t + REDRAW) {
            return;
        }
        last = Some(live.elapsed);
        let mut screen = String::from("\x1b[H\x1b[2J");
        screen.push_str(&table(live, kvm));
        let text = String::from_utf8_lossy(&captured.0.lock().expect("buffer lock poisoned")).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        screen.push_str("--- guest output ---\n");
        for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            screen.push_str(line.trim_end_matches('\r'));
            screen.push('\n');
        }
        let _ = std::io::stderr().write_all(screen.as_bytes());
    })
}

/// An observer that prints a status line every second (stderr).
pub fn piped() -> Observer {
    let mut next = STATUS_EVERY;
    Box::new(move |live: &Live| {
        if live.elapsed >= next {
            next = live.elapsed + STATUS_EVERY;
            eprintln!("{}", status_line(live));
        }
    })
}
