//! Each process's waiting on the timeline: ready (it could run, another has the CPU) as a light
//! band, blocked as a hatched one with the reason in its title, and a mark where it was woken —
//! the lecture's state diagram laid along time. Running is the lane's solid slices (mod.rs); a
//! process's states never overlap in time, so the bands never cover them.

use svg::node::element::Group;
use svg::node::element::{Definitions, Line, Path, Pattern, Rectangle, Title};

use super::{duration, round, Scale, BAR, DISK_COLOR};
use crate::observe::states::{Blocked, Interval, State};

/// Ready: a light shade of the running colour.
pub(super) const READY_COLOR: &str = "#c6dcf2";
/// The hatching of a blocked band, and the mark of a wake-up.
pub(super) const BLOCKED_FILL: &str = "url(#blocked-hatch)";
pub(super) const WAKE_COLOR: &str = "#00897b";

/// The hatch pattern the blocked bands use.
pub(super) fn defs() -> Definitions {
    let pattern = Pattern::new()
        .set("id", "blocked-hatch")
        .set("patternUnits", "userSpaceOnUse")
        .set("width", 6)
        .set("height", 6)
        .set("patternTransform", "rotate(45)")
        .add(Rectangle::new().set("width", 6).set("height", 6).set("fill", "#fbe9e7"))
        .add(
            Line::new()
                .set("x1", 0)
                .set("y1", 0)
                .set("x2", 0)
                .set("y2", 6)
                .set("stroke", "#bf360c")
                .set("stroke-width", 2),
        );
    Definitions::new().add(pattern)
}

/// Process `pid`'s ready and blocked intervals on its lane at `y`, with a wake mark at the end
/// of each blocked one (its title: what woke it).
pub(super) fn bands(scale: &Scale, tsc_hz: u64, pid: u32, intervals: &[Interval], y: f64) -> Group {
    let mut group = Group::new().set("class", "states").set("data-pid", pid);
    for (n, i) in intervals.iter().enumerate() {
        let (x0, x1) = (scale.x(i.from), scale.x(i.to));
        let width = round((x1 - x0).max(0.6));
        let span = duration(i.to.saturating_sub(i.from), tsc_hz);
        let (class, fill, title) = match i.state {
            State::Ready => ("ready", READY_COLOR, format!("pid {pid} ready {span} ({})", i.cause.name())),
            State::Blocked(_) => ("blocked", BLOCKED_FILL, format!("pid {pid} {} {span}", i.state.label())),
            State::Running | State::Ended => continue,
        };
        group = group.add(
            Rectangle::new()
                .set("class", class)
                .set("x", x0)
                .set("y", y + 4.0)
                .set("width", width)
                .set("height", BAR - 8.0)
                .set("fill", fill)
                .add(Title::new(title)),
        );
        if let (State::Blocked(_), Some(next)) = (i.state, intervals.get(n + 1)) {
            // A small flag where the process became ready again, titled with what woke it.
            let d =
                format!("M {x} {top} l 0 {h} M {x} {top} l 6 3 l -6 3", x = round(x1), top = y - 2.0, h = BAR + 4.0);
            group = group.add(
                Path::new()
                    .set("class", "wake")
                    .set("d", d)
                    .set("stroke", WAKE_COLOR)
                    .set("fill", WAKE_COLOR)
                    .add(Title::new(format!("pid {pid} woken: {}", next.cause.name()))),
            );
        }
    }
    group
}

/// Where process `pid` (its lane at `y`) was blocked on a disk, from its `intervals`: a band
/// along the lane's foot.
pub(super) fn disk_waits(scale: &Scale, tsc_hz: u64, pid: u32, intervals: &[Interval], y: f64) -> Group {
    let mut group = Group::new().set("class", "disk-waits").set("data-pid", pid);
    for s in intervals.iter().filter(|i| i.state == State::Blocked(Blocked::Disk)) {
        let (x0, x1) = (scale.x(s.from), scale.x(s.to));
        group = group.add(
            Rectangle::new()
                .set("class", "disk-wait")
                .set("x", x0)
                .set("y", y + BAR - 6.0)
                .set("width", round((x1 - x0).max(0.6)))
                .set("height", 6)
                .set("fill", DISK_COLOR)
                .add(Title::new(format!(
                    "pid {pid} blocked on the disk {}",
                    duration(s.to.saturating_sub(s.from), tsc_hz)
                ))),
        );
    }
    group
}
