//! `lde run --timeline FILE.svg`: the run drawn as OS textbooks draw it — one lane per process
//! with the slices when it ran, timer ticks along the top, system calls and faults marked in
//! the lanes, and the kernel's own time (scheduling, idle) in a lane apart.

mod lanes;
mod states;

use crate::observe::states::{intervals, transitions};
use std::collections::BTreeMap;

use lde_abi::stats::{Event, EV_EXIT, EV_FAULT, EV_SYSCALL, EV_TICK};
use lde_abi::syscall::NAMES;
use svg::node::element::{Group, Line, Rectangle, Text, Title};
use svg::Document;

use crate::observe::recorder::Recorder;
use lanes::{CpuLane, Lanes};

// Sized to be read at the width of a README (about 800 pixels): 1200 units wide, 16-unit text.
/// Blocked on a disk.
const DISK_COLOR: &str = "#c2185b";
const WIDTH: f64 = 1200.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const LANE: f64 = 38.0;
const BAR: f64 = 24.0;
const FONT: f64 = 16.0;
/// Idle time: darker than the lanes' background, so that a halted CPU is not mistaken for none.
const IDLE_COLOR: &str = "#90a4ae";
/// A process running in ring 3.
const RUNNING_COLOR: &str = "#4a90d9";
/// Most system-call marks drawn (evenly sampled beyond that, and said so).
const MAX_SYSCALL_MARKS: usize = 20_000;

/// A lane's span of time, in TSC cycles.
#[derive(Clone, Copy)]
struct Span {
    from: u64,
    to: u64,
}

impl Span {
    /// Its length (0 for a span the kernel's stamps put backwards).
    fn cycles(&self) -> u64 {
        self.to.saturating_sub(self.from)
    }
}

/// Where TSC stamps land on the time axis. The stamps are the kernel's to write, in any order
/// and of any value: the axis runs from the smallest to the largest, and nothing is computed
/// that could overflow.
struct Scale {
    start: u64,
    end: u64,
    plot: f64,
}

impl Scale {
    fn new(events: &[Event]) -> Scale {
        let start = events.iter().map(|e| e.tsc).min().unwrap_or(0);
        let end = events.iter().map(|e| e.tsc).max().unwrap_or(start);
        Scale { start, end, plot: WIDTH - LEFT - RIGHT }
    }

    /// Cycles from the first stamp to the last (at least 1).
    fn span(&self) -> u64 {
        self.end.saturating_sub(self.start).max(1)
    }

    fn x(&self, tsc: u64) -> f64 {
        let cycles = tsc.clamp(self.start, self.end) - self.start;
        round(LEFT + cycles as f64 * self.plot / self.span() as f64)
    }
}

/// Builds the SVG document.
pub fn render(recorder: &Recorder, title: &str) -> Document {
    let events = &recorder.events;
    let tsc_hz = recorder.last.as_ref().map_or(1, |p| p.tsc_hz.max(1));
    let names: BTreeMap<u32, String> = recorder.processes().iter().map(|p| (p.pid, p.name().to_string())).collect();
    let scale = Scale::new(events);
    let lanes = Lanes::new(events, names.keys().copied(), scale.end);
    let state_intervals = intervals(&transitions(events), scale.end);

    let rows = lanes.slices.len() + lanes.cpus.len();
    let height = TOP + rows as f64 * LANE + 180.0;
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", (0, 0, WIDTH, height))
        .set("font-family", "sans-serif")
        .set("font-size", FONT);
    doc = doc.add(states::defs());
    doc = doc.add(Rectangle::new().set("width", WIDTH).set("height", height).set("fill", "white"));
    // A long command line gets smaller type rather than running off the edge.
    let title_size = ((WIDTH - 20.0) / (title.chars().count() as f64 * 0.6)).clamp(10.0, FONT + 2.0).floor();
    doc = doc.add(Text::new(title).set("x", 10).set("y", 24).set("font-size", title_size).set("font-weight", "bold"));
    let axis_y = TOP + rows as f64 * LANE + 10.0;
    doc = doc.add(axis(&scale, tsc_hz, axis_y));

    // Timer ticks along the top.
    let mut ticks = Group::new().set("class", "ticks");
    for e in events.iter().filter(|e| e.kind == EV_TICK) {
        let px = scale.x(e.tsc);
        ticks = ticks.add(
            Line::new().set("x1", px).set("x2", px).set("y1", TOP - 14.0).set("y2", TOP - 4.0).set("stroke", "#e07b00"),
        );
    }
    doc = doc.add(ticks).add(Text::new("timer ticks").set("x", 10).set("y", TOP - 4.0).set("fill", "#e07b00"));

    let syscall_count = events.iter().filter(|e| e.kind == EV_SYSCALL).count();
    let every = syscall_count.div_ceil(MAX_SYSCALL_MARKS).max(1);
    for (i, (pid, spans)) in lanes.slices.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        let name = names.get(pid).map_or("?", String::as_str);
        doc = doc.add(process_lane(events, &scale, tsc_hz, (*pid, name, spans), y, every));
        if let Some(list) = state_intervals.get(pid) {
            doc = doc.add(states::bands(&scale, tsc_hz, *pid, list, y));
            doc = doc.add(states::disk_waits(&scale, tsc_hz, *pid, list, y));
        }
    }
    // One lane per processor; with one, only the kernel's time (a process's lane says when it ran).
    let several = lanes.cpus.len() > 1;
    for (i, (cpu, lane)) in lanes.cpus.iter().enumerate() {
        let y = TOP + (lanes.slices.len() + i) as f64 * LANE;
        doc = doc.add(cpu_lane(*cpu, lane, several.then_some(&names), &scale, tsc_hz, y));
    }
    doc.add(legend(recorder, axis_y + 72.0, every))
}

/// The time axis with round steps (at most a dozen labels, whatever the stamps say).
fn axis(scale: &Scale, tsc_hz: u64, axis_y: f64) -> Group {
    let seconds = scale.span() as f64 / tsc_hz as f64;
    let step = nice_step(seconds / 10.0);
    let mut axis = Group::new().set("class", "axis");
    let labels = (seconds / step + 1e-9).floor().clamp(0.0, 12.0) as u32;
    for i in 0..=labels {
        let t = f64::from(i) * step;
        let px = round(LEFT + t / seconds.max(1e-12) * scale.plot);
        axis = axis
            .add(Line::new().set("x1", px).set("x2", px).set("y1", TOP - 6.0).set("y2", axis_y).set("stroke", "#ddd"))
            .add(Text::new(format_seconds(t, step)).set("x", px).set("y", axis_y + 18.0).set("text-anchor", "middle"));
    }
    axis.add(
        Text::new("guest time (TSC), from the first event")
            .set("x", round(LEFT + scale.plot / 2.0))
            .set("y", axis_y + 40.0)
            .set("text-anchor", "middle")
            .set("fill", "#555"),
    )
}

/// One process's lane at `y`: when it ran, its system calls (one in `every`), its end.
fn process_lane(
    events: &[Event],
    scale: &Scale,
    tsc_hz: u64,
    (pid, name, spans): (u32, &str, &[Span]),
    y: f64,
    every: usize,
) -> Group {
    let mut lane = Group::new().set("class", "lane").set("data-pid", pid);
    lane = lane.add(Text::new(format!("pid {pid} {name}")).set("x", 10).set("y", y + BAR * 0.72));
    lane = lane.add(
        Rectangle::new().set("x", LEFT).set("y", y).set("width", scale.plot).set("height", BAR).set("fill", "#f4f6f8"),
    );
    for s in spans {
        let (x0, x1) = (scale.x(s.from), scale.x(s.to));
        lane = lane.add(
            Rectangle::new()
                .set("class", "slice")
                .set("x", x0)
                .set("y", y)
                .set("width", round((x1 - x0).max(0.6)))
                .set("height", BAR)
                .set("fill", RUNNING_COLOR)
                .add(Title::new(format!("pid {pid} ran {}", duration(s.cycles(), tsc_hz)))),
        );
    }
    for (n, e) in events.iter().filter(|e| e.kind == EV_SYSCALL && u32::from(e.pid) == pid).enumerate() {
        if n % every != 0 {
            continue;
        }
        let px = scale.x(e.tsc);
        let name = NAMES.get(e.arg as usize).copied().unwrap_or("?");
        lane = lane.add(
            Line::new()
                .set("class", "syscall")
                .set("x1", px)
                .set("x2", px)
                .set("y1", y + BAR * 0.5)
                .set("y2", y + BAR + 6.0)
                .set("stroke", "#1b5e20")
                .set("stroke-width", 2)
                .add(Title::new(format!("syscall {name}"))),
        );
    }
    for e in events.iter().filter(|e| u32::from(e.pid) == pid && (e.kind == EV_FAULT || e.kind == EV_EXIT)) {
        let (color, label) = if e.kind == EV_FAULT {
            ("#d32f2f", format!("killed by {}", lde_kcore::trap::mnemonic(u64::from(e.arg))))
        } else {
            ("#333", format!("exit {}", e.arg))
        };
        lane = lane.add(
            Rectangle::new()
                .set("class", if e.kind == EV_FAULT { "fault" } else { "exit" })
                .set("x", round(scale.x(e.tsc) - 3.0))
                .set("y", y - 3.0)
                .set("width", 6)
                .set("height", BAR + 6.0)
                .set("fill", color)
                .add(Title::new(label)),
        );
    }
    lane
}

/// One processor's lane: the kernel's own time (switching and ending) and its idle time, and
/// with several processors (`names` given) what ran on it.
fn cpu_lane(
    cpu: u8,
    lane: &CpuLane,
    names: Option<&BTreeMap<u32, String>>,
    scale: &Scale,
    tsc_hz: u64,
    y: f64,
) -> Group {
    let label = if names.is_some() { format!("cpu {cpu}") } else { "kernel / idle".to_string() };
    let mut group = Group::new().set("class", "kernel").set("data-cpu", cpu);
    group = group.add(Text::new(label).set("x", 10).set("y", y + BAR * 0.72));
    group = group.add(
        Rectangle::new().set("x", LEFT).set("y", y).set("width", scale.plot).set("height", BAR).set("fill", "#f4f6f8"),
    );
    let ran: Vec<(Span, String)> = match names {
        Some(names) => lane
            .ran
            .iter()
            .map(|(pid, s)| (*s, format!("pid {pid} {}", names.get(pid).map_or("?", String::as_str))))
            .collect(),
        None => Vec::new(),
    };
    let kernel = lane.kernel.iter().map(|s| (*s, "kernel".to_string()));
    let idle = lane.idle.iter().map(|s| (*s, "idle".to_string()));
    let colored = ran
        .into_iter()
        .map(|r| (r, RUNNING_COLOR))
        .chain(kernel.map(|k| (k, "#8e44ad")))
        .chain(idle.map(|i| (i, IDLE_COLOR)));
    for ((s, what), color) in colored {
        let (x0, x1) = (scale.x(s.from), scale.x(s.to));
        group = group.add(
            Rectangle::new()
                .set("x", x0)
                .set("y", y)
                .set("width", round((x1 - x0).max(0.6)))
                .set("height", BAR)
                .set("fill", color)
                .add(Title::new(format!("{what} {}", duration(s.cycles(), tsc_hz)))),
        );
    }
    group
}

/// The colour key and a note on what was drawn, from `legend_y` down.
fn legend(recorder: &Recorder, mut legend_y: f64, every: usize) -> Group {
    let mut legend = Group::new().set("class", "legend");
    let mut lx = 10.0;
    for (color, label) in [
        (RUNNING_COLOR, "running in ring 3 (and its traps)"),
        ("#8e44ad", "kernel: switching, ending"),
        (IDLE_COLOR, "kernel: idle (hlt)"),
        (states::READY_COLOR, "ready (waiting for the CPU)"),
        (states::BLOCKED_FILL, "blocked (sleep, input, a child; hover for why)"),
        (states::WAKE_COLOR, "woken (hover: by what)"),
        ("#e07b00", "timer tick"),
        (DISK_COLOR, "blocked on a disk"),
        ("#1b5e20", "system call"),
        ("#d32f2f", "killed by a fault"),
        ("#333", "exit"),
    ] {
        let width = 20.0 + label.len() as f64 * FONT * 0.55 + 22.0;
        if lx + width > WIDTH {
            lx = 10.0;
            legend_y += FONT + 8.0;
        }
        legend = legend
            .add(
                Rectangle::new()
                    .set("x", lx)
                    .set("y", legend_y - 13.0)
                    .set("width", 14)
                    .set("height", 14)
                    .set("fill", color),
            )
            .add(Text::new(label).set("x", lx + 20.0).set("y", legend_y));
        lx += width;
    }
    let mut notes = format!("{} events", recorder.events.len());
    if recorder.events_lost > 0 {
        notes.push_str(&format!(", {} lost (the ring overflowed before lde read it)", recorder.events_lost));
    }
    if recorder.rings_went_back {
        notes.push_str(", the kernel's event count went backwards (its log is not to be trusted)");
    }
    if every > 1 {
        notes.push_str(&format!(", one system call in {every} drawn"));
    }
    legend.add(Text::new(notes).set("x", 10).set("y", legend_y + FONT + 10.0).set("fill", "#555"))
}

/// Writes the timeline to `out`.
pub fn write(recorder: &Recorder, title: &str, out: impl std::io::Write) -> std::io::Result<()> {
    svg::write(out, &render(recorder, title))
}

/// A coordinate to a tenth of a unit: enough for the eye, and short in the file.
fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// TSC cycles as a duration with three significant figures or so.
fn duration(cycles: u64, tsc_hz: u64) -> String {
    let us = cycles as f64 * 1e6 / tsc_hz as f64;
    match us {
        us if us < 1_000.0 => format!("{us:.0} us"),
        us if us < 100_000.0 => format!("{:.1} ms", us / 1e3),
        us => format!("{:.0} ms", us / 1e3),
    }
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-6);
    let magnitude = 10f64.powf(raw.log10().floor());
    let n = raw / magnitude;
    let nice = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn format_seconds(t: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{t:.0} s")
    } else {
        format!("{:.0} ms", t * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lde_abi::stats::{EV_IDLE, EV_SWITCH_IN, EV_SWITCH_OUT};

    fn event(tsc: u64, kind: u8, pid: u16) -> Event {
        Event { seq: 0, tsc, kind, cpu: 0, pid, arg: u32::MAX }
    }

    #[test]
    fn stamps_out_of_order_and_at_the_ends_of_u64_draw_without_overflow() {
        let mut recorder = Recorder::new_for_tests();
        let mut page = lde_abi::stats::StatsPage::new();
        page.tsc_hz = 1;
        recorder.last = Some(Box::new(page));
        recorder.events = vec![
            event(u64::MAX, EV_SWITCH_IN, 1),
            event(0, EV_SYSCALL, 1),
            event(5, EV_SWITCH_OUT, 1),
            event(u64::MAX, EV_IDLE, 0),
            event(3, EV_SWITCH_IN, 2),
            event(u64::MAX - 1, EV_TICK, 0),
            event(1, EV_FAULT, 2),
        ];
        recorder.events_lost = u64::MAX;
        let svg = render(&recorder, "hostile").to_string();
        assert!(svg.contains(&format!("{} lost", u64::MAX)), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Every stamp at one value: a span of 0 cycles still draws.
        recorder.events = vec![event(u64::MAX, EV_SWITCH_IN, 1), event(u64::MAX, EV_EXIT, 1)];
        let svg = render(&recorder, "flat").to_string();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
