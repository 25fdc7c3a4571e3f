//! `lde run --watch`: a live table of the kernel's counters while the guest runs. On a terminal
//! it draws on the alternate screen (left on every way out, so the scrollback keeps what was
//! there), fitted to the terminal's size, with the tail of the guest's output below it; piped,
//! it prints one status line a second.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};

use crate::devices::serial::SharedBuffer;
use crate::observe::monitor::{Live, Observer};
use crate::observe::summary;

/// Most lines of guest output shown under the table.
const TAIL_LINES: usize = 10;
/// Lines of the table above the process rows.
const HEAD_LINES: usize = 6;
/// Least time between two redraws.
const REDRAW: Duration = Duration::from_millis(250);
/// Time between two status lines when piped.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The sum of counts from the kernel's page (the guest's to write): saturated, never wrapped.
fn saturating_sum(counts: &[u64]) -> u64 {
    counts.iter().fold(0, |sum, &n| sum.saturating_add(n))
}

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
    let several = page.cpus.iter().filter(|c| c.online != 0).count() > 1;
    for (i, c) in page.cpus.iter().enumerate().filter(|(_, c)| several && c.online != 0) {
        let running = if c.current_pid == 0 { "idle or kernel".to_string() } else { format!("pid {}", c.current_pid) };
        let _ = writeln!(out, "cpu {i}   {running}, {}", summary::cpu_figures(c, page.tsc_hz));
    }
    if several {
        let _ = writeln!(out, "lock    {}", summary::lock_figures(page));
    }
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
        "{:>5} {:<15} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
        "PID", "NAME", "STATE", "TICKS", "SCHED", "VOL", "INVOL", "SYSCALLS", "FAULTS"
    );
    for p in page.procs.iter().filter(|p| p.pid != 0) {
        let state = crate::observe::report::state_name(p.state);
        let _ = writeln!(
            out,
            "{:>5} {:<15} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
            p.pid,
            p.name(),
            state,
            p.ticks,
            p.scheduled,
            p.voluntary,
            p.involuntary,
            saturating_sum(&p.syscalls),
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
            saturating_sum(&p.calls),
            p.kills,
            live.exits.total()
        ),
        None => format!("lde: watch {:.1} s: no counters yet", live.elapsed.as_secs_f64()),
    }
}

/// What fits on a `width` × `height` screen: the table's head, as many process rows as fit
/// (and how many more there are), then the tail of the guest's output; no line wider than
/// `width`.
pub fn screen(table: &str, output: &str, width: usize, height: usize) -> Vec<String> {
    let fit = |line: &str| -> String {
        line.chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .map(|c| if c == '\t' { ' ' } else { c })
            .take(width)
            .collect()
    };
    let table: Vec<&str> = table.lines().collect();
    // The head ends with the processes' header (its length grows with the processors).
    let head_lines = table.iter().position(|l| l.trim_start().starts_with("PID ")).map_or(HEAD_LINES, |i| i + 1);
    let (head, procs) = table.split_at(head_lines.min(table.len()));
    let mut lines: Vec<String> = head.iter().take(height).map(|l| fit(l)).collect();
    let output: Vec<&str> = output.lines().collect();
    let room = height.saturating_sub(lines.len());
    let tail_room = if output.is_empty() || room < 2 {
        0
    } else {
        // The processes first; the guest's tail gets what they leave, and at least a third.
        let left = room.saturating_sub(procs.len() + 1);
        left.max(room / 3).min(TAIL_LINES).min(output.len()).min(room - 1)
    };
    let proc_room = room.saturating_sub(if tail_room > 0 { tail_room + 1 } else { 0 });
    if procs.len() <= proc_room {
        lines.extend(procs.iter().map(|l| fit(l)));
    } else if proc_room > 0 {
        lines.extend(procs[..proc_room - 1].iter().map(|l| fit(l)));
        lines.push(fit(&format!("... {} more processes", procs.len() - (proc_room - 1))));
    }
    if tail_room > 0 {
        lines.push(fit("--- guest output ---"));
        lines.extend(output[output.len().saturating_sub(tail_room)..].iter().map(|l| fit(l)));
    }
    lines
}

/// The size of the terminal on stderr (columns, rows); 80 × 24 if it cannot say.
fn stderr_size() -> (usize, usize) {
    // SAFETY: winsize is plain data that TIOCGWINSZ fills; fd 2 is only inspected.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 && size.ws_row > 0 {
        (usize::from(size.ws_col), usize::from(size.ws_row))
    } else {
        (80, 24)
    }
}

/// The alternate screen on stderr: entered at the first draw, left when dropped.
struct Screen {
    entered: bool,
}

impl Screen {
    fn draw(&mut self, lines: &[String], height: usize) -> std::io::Result<()> {
        let mut err = std::io::stderr().lock();
        if !self.entered {
            queue!(err, EnterAlternateScreen, Hide)?;
            self.entered = true;
        }
        // Each line is rewritten in place: no clearing of the whole screen, no flicker.
        for (row, line) in lines.iter().enumerate() {
            queue!(err, MoveTo(0, row as u16), Print(line), Clear(ClearType::UntilNewLine))?;
        }
        if lines.len() < height {
            queue!(err, MoveTo(0, lines.len() as u16), Clear(ClearType::FromCursorDown))?;
        }
        err.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.entered {
            let _ = execute!(std::io::stderr(), Show, LeaveAlternateScreen);
        }
    }
}

/// An observer that redraws the table on the terminal (stderr), with the tail of `captured`.
/// The screen is restored when the observer is dropped, which every end of a run does.
pub fn terminal(kvm: &'static str, captured: SharedBuffer) -> Observer {
    let mut last: Option<Duration> = None;
    let mut screen = Screen { entered: false };
    Box::new(move |live: &Live| {
        if last.is_some_and(|t| live.elapsed < t + REDRAW) {
            return;
        }
        last = Some(live.elapsed);
        let (width, height) = stderr_size();
        let text = String::from_utf8_lossy(&captured.0.lock().expect("buffer lock poisoned")).into_owned();
        let lines = self::screen(&table(live, kvm), &text, width, height);
        if let Err(e) = screen.draw(&lines, height) {
            log::debug!("--watch: cannot draw: {e}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_fits_an_80_by_24_terminal() {
        let mut table = String::from("lde watch: 1.00 s on pvm\ndoors\ntraps\nsched\nexits\n");
        table.push_str(&format!(
            "{:>5} {:<15} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}\n",
            "PID", "NAME", "STATE", "TICKS", "SCHED", "VOL", "INVOL", "SYSCALLS", "FAULTS"
        ));
        for pid in 1..=12 {
            table.push_str(&format!(
                "{pid:>5} {:<15} {:<9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}\n",
                "counter-program", "running", 1234567, 1234567, 1234567, 1234567, 123456789, 123456
            ));
        }
        let output: String = (0..30).map(|i| format!("line {i} \x1b[31m{}\r\n", "x".repeat(100))).collect();
        let lines = screen(&table, &output, 80, 24);
        assert_eq!(lines.len(), 24);
        assert!(lines.iter().all(|l| l.chars().count() <= 80 && !l.contains('\x1b')), "{lines:#?}");
        assert_eq!(lines[0], "lde watch: 1.00 s on pvm");
        assert!(lines[5].starts_with("  PID NAME"));
        assert!(lines.iter().any(|l| l.starts_with("... ") && l.ends_with(" more processes")), "{lines:#?}");
        assert!(lines[23].starts_with("line 29 [31mxxx"), "{}", lines[23]);
        assert_eq!(saturating_sum(&[u64::MAX, 2, u64::MAX]), u64::MAX);
        // Few processes, short output: everything, in order.
        let lines = screen("a\nb\nc\nd\ne\nPID\n1 p", "hi\r\n", 80, 24);
        assert_eq!(lines, ["a", "b", "c", "d", "e", "PID", "1 p", "--- guest output ---", "hi"]);
    }
}
