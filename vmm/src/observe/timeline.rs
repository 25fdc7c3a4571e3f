//! `lde run --timeline FILE.svg`: the run drawn as OS textbooks draw it — one lane per process
//! with the slices when it ran, timer ticks along the top, system calls and faults marked in
//! the lanes, and the kernel's own time (scheduling, idle) in a lane apart.

use std::collections::BTreeMap;

use lde_abi::stats::{EV_EXIT, EV_FAULT, EV_IDLE, EV_SWITCH_IN, EV_SWITCH_OUT, EV_SYSCALL, EV_TICK};
use lde_abi::syscall::NAMES;
use svg::node::element::{Group, Line, Rectangle, Text, Title};
use svg::Document;

use crate::observe::recorder::Recorder;

// Sized to be read at the width of a README (about 800 pixels): 1200 units wide, 16-unit text.
const WIDTH: f64 = 1200.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const LANE: f64 = 38.0;
const BAR: f64 = 24.0;
const FONT: f64 = 16.0;
/// Idle time: darker than the lanes' background, so that a halted CPU is not mistaken for none.
const IDLE_COLOR: &str = "#90a4ae";
/// Most system-call marks drawn (evenly sampled beyond that, and said so).
const MAX_SYSCALL_MARKS: usize = 20_000;

/// A lane's span of time, in TSC cycles.
struct Span {
    from: u64,
    to: u64,
}

/// Builds the SVG document.
pub fn render(recorder: &Recorder, title: &str) -> Document {
    let events = &recorder.events;
    let tsc_hz = recorder.last.as_ref().map_or(1, |p| p.tsc_hz.max(1));
    let names: BTreeMap<u32, String> = recorder.processes().iter().map(|p| (p.pid, p.name().to_string())).collect();
    let start = events.first().map_or(0, |e| e.tsc);
    let end = events.last().map_or(start + 1, |e| e.tsc.max(start + 1));
    let plot = WIDTH - LEFT - RIGHT;
    let x = |tsc: u64| round(LEFT + (tsc.saturating_sub(start)) as f64 * plot / (end - start) as f64);

    // Running slices per pid; kernel time between a switch out and the next switch in; idle.
    let mut slices: BTreeMap<u32, Vec<Span>> = names.keys().map(|&pid| (pid, Vec::new())).collect();
    let mut kernel: Vec<Span> = Vec::new();
    let mut idle: Vec<Span> = Vec::new();
    let mut running: Option<(u32, u64)> = None;
    let mut out_at: Option<u64> = None;
    let mut idle_at: Option<u64> = None;
    for e in events {
        let pid = u32::from(e.pid);
        match e.kind {
            EV_SWITCH_IN => {
                if let Some(from) = idle_at.take() {
                    idle.push(Span { from, to: e.tsc });
                } else if let Some(from) = out_at.take() {
                    kernel.push(Span { from, to: e.tsc });
                }
                if let Some((p, from)) = running.take() {
                    slices.entry(p).or_default().push(Span { from, to: e.tsc });
                }
                running = Some((pid, e.tsc));
            }
            // A process stops running where it exits or is killed; what follows until the
            // switch (its last lines, freeing its memory) is the kernel's.
            EV_SWITCH_OUT | EV_EXIT | EV_FAULT => {
                if let Some((p, from)) = running.take_if(|(p, _)| *p == pid) {
                    slices.entry(p).or_default().push(Span { from, to: e.tsc });
                }
                out_at.get_or_insert(e.tsc);
            }
            EV_IDLE => {
                if let Some(from) = out_at.take() {
                    kernel.push(Span { from, to: e.tsc });
                }
                idle_at.get_or_insert(e.tsc);
            }
            _ => {}
        }
    }
    if let Some((p, from)) = running {
        slices.entry(p).or_default().push(Span { from, to: end });
    }

    let lanes = slices.len() + 1;
    let height = TOP + lanes as f64 * LANE + 150.0;
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", (0, 0, WIDTH, height))
        .set("font-family", "sans-serif")
        .set("font-size", FONT);
    doc = doc.add(Rectangle::new().set("width", WIDTH).set("height", height).set("fill", "white"));
    // A long command line gets smaller type rather than running off the edge.
    let title_size = ((WIDTH - 20.0) / (title.chars().count() as f64 * 0.6)).clamp(10.0, FONT + 2.0).floor();
    doc = doc.add(Text::new(title).set("x", 10).set("y", 24).set("font-size", title_size).set("font-weight", "bold"));

    // Time axis with round steps.
    let seconds = (end - start) as f64 / tsc_hz as f64;
    let step = nice_step(seconds / 10.0);
    let axis_y = TOP + lanes as f64 * LANE + 10.0;
    let mut axis = Group::new().set("class", "axis");
    let mut t = 0.0;
    while t <= seconds + 1e-9 {
        let px = round(LEFT + t / seconds.max(1e-12) * plot);
        axis = axis
            .add(Line::new().set("x1", px).set("x2", px).set("y1", TOP - 6.0).set("y2", axis_y).set("stroke", "#ddd"))
            .add(Text::new(format_seconds(t, step)).set("x", px).set("y", axis_y + 18.0).set("text-anchor", "middle"));
        t += step;
    }
    axis = axis.add(
        Text::new("guest time (TSC), from the first event")
            .set("x", round(LEFT + plot / 2.0))
            .set("y", axis_y + 40.0)
            .set("text-anchor", "middle")
            .set("fill", "#555"),
    );
    doc = doc.add(axis);

    // Timer ticks along the top.
    let mut ticks = Group::new().set("class", "ticks");
    for e in events.iter().filter(|e| e.kind == EV_TICK) {
        let px = x(e.tsc);
        ticks = ticks.add(
            Line::new().set("x1", px).set("x2", px).set("y1", TOP - 14.0).set("y2", TOP - 4.0).set("stroke", "#e07b00"),
        );
    }
    doc = doc.add(ticks).add(Text::new("timer ticks").set("x", 10).set("y", TOP - 4.0).set("fill", "#e07b00"));

    let syscall_count = events.iter().filter(|e| e.kind == EV_SYSCALL).count();
    let every = syscall_count.div_ceil(MAX_SYSCALL_MARKS).max(1);
    for (i, (pid, spans)) in slices.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        let name = names.get(pid).map_or("?", String::as_str);
        let mut lane = Group::new().set("class", "lane").set("data-pid", *pid);
        lane = lane.add(Text::new(format!("pid {pid} {name}")).set("x", 10).set("y", y + BAR * 0.72));
        lane = lane.add(
            Rectangle::new().set("x", LEFT).set("y", y).set("width", plot).set("height", BAR).set("fill", "#f4f6f8"),
        );
        for s in spans {
            let (x0, x1) = (x(s.from), x(s.to));
            lane = lane.add(
                Rectangle::new()
                    .set("class", "slice")
                    .set("x", x0)
                    .set("y", y)
                    .set("width", round((x1 - x0).max(0.6)))
                    .set("height", BAR)
                    .set("fill", "#4a90d9")
                    .add(Title::new(format!("pid {pid} ran {}", duration(s.to - s.from, tsc_hz)))),
            );
        }
        for (n, e) in events.iter().filter(|e| e.kind == EV_SYSCALL && u32::from(e.pid) == *pid).enumerate() {
            if n % every != 0 {
                continue;
            }
            let px = x(e.tsc);
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
        for e in events.iter().filter(|e| u32::from(e.pid) == *pid && (e.kind == EV_FAULT || e.kind == EV_EXIT)) {
            let px = x(e.tsc);
            let (color, label) = if e.kind == EV_FAULT {
                ("#d32f2f", format!("killed by {}", lde_kcore::trap::mnemonic(u64::from(e.arg))))
            } else {
                ("#333", format!("exit {}", e.arg))
            };
            lane = lane.add(
                Rectangle::new()
                    .set("class", if e.kind == EV_FAULT { "fault" } else { "exit" })
                    .set("x", round(px - 3.0))
                    .set("y", y - 3.0)
                    .set("width", 6)
                    .set("height", BAR + 6.0)
                    .set("fill", color)
                    .add(Title::new(label)),
            );
        }
        doc = doc.add(lane);
    }

    // The kernel's own time.
    let y = TOP + slices.len() as f64 * LANE;
    let mut lane = Group::new().set("class", "kernel");
    lane = lane.add(Text::new("kernel / idle").set("x", 10).set("y", y + BAR * 0.72));
    lane = lane
        .add(Rectangle::new().set("x", LEFT).set("y", y).set("width", plot).set("height", BAR).set("fill", "#f4f6f8"));
    for (spans, color, what) in [(&kernel, "#8e44ad", "kernel"), (&idle, IDLE_COLOR, "idle")] {
        for s in spans {
            let (x0, x1) = (x(s.from), x(s.to));
            lane = lane.add(
                Rectangle::new()
                    .set("x", x0)
                    .set("y", y)
                    .set("width", round((x1 - x0).max(0.6)))
                    .set("height", BAR)
                    .set("fill", color)
                    .add(Title::new(format!("{what} {}", duration(s.to - s.from, tsc_hz)))),
            );
        }
    }
    doc = doc.add(lane);

    let mut legend_y = axis_y + 72.0;
    let mut legend = Group::new().set("class", "legend");
    let mut lx = 10.0;
    for (color, label) in [
        ("#4a90d9", "running in ring 3 (and its traps)"),
        ("#8e44ad", "kernel: switching, ending"),
        (IDLE_COLOR, "kernel: idle (hlt)"),
        ("#e07b00", "timer tick"),
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
    let mut notes = format!("{} events", events.len());
    if recorder.events_lost > 0 {
        notes.push_str(&format!(", {} lost (the ring overflowed before lde read it)", recorder.events_lost));
    }
    if every > 1 {
        notes.push_str(&format!(", one system call in {every} drawn"));
    }
    legend = legend.add(Text::new(notes).set("x", 10).set("y", legend_y + FONT + 10.0).set("fill", "#555"));
    doc.add(legend)
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
