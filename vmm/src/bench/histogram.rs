//! `lde bench --histogram FILE.svg`: one histogram per measurement, each on its own logarithmic
//! axis (the measurements span three orders of magnitude), in the bins the samples were counted
//! in (`lde_abi::histogram`: about 12 % wide), labelled in cycles and in ns, with the median and
//! the p99 marked.

use lde_abi::histogram::bin_ceiling;
use svg::node::element::{Group, Line, Rectangle, Text, Title};
use svg::Document;

use super::output::{BenchReport, Measurement};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 130.0;
const BARS: f64 = 75.0;
const FONT: f64 = 14.0;

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Cycles as short text: 950, 12.3k, 1.25M.
fn short(cycles: f64) -> String {
    match cycles {
        c if c >= 1e6 => format!("{:.3}M", c / 1e6),
        c if c >= 1e4 => format!("{:.0}k", c / 1e3),
        c if c >= 1e3 => format!("{:.1}k", c / 1e3),
        c => format!("{c:.0}"),
    }
}

/// Nanoseconds as short text.
fn ns(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        v if v >= 1e3 => format!("{:.1} us", v / 1e3),
        v => format!("{v:.0} ns"),
    }
}

/// One measurement's row at `y`.
fn row(m: &Measurement, y: f64, tsc_hz: u64) -> Group {
    let mut g = Group::new().set("class", "histogram").set("data-name", m.name.as_str());
    g = g.add(Text::new(m.name.as_str()).set("x", 10).set("y", y + 30.0).set("font-weight", "bold"));
    g = g.add(Text::new(format!("n = {}", m.samples)).set("x", 10).set("y", y + 50.0).set("fill", "#555"));
    if let Some(why) = &m.unresolved {
        let text = Text::new(format!("unresolved: {why}")).set("class", "unresolved");
        return g.add(text.set("x", LEFT).set("y", y + 50.0).set("fill", "#d32f2f"));
    }
    let Some(&(first, _)) = m.histogram.first() else { return g };
    let last = m.histogram.last().map_or(first, |h| h.0);
    // The bins come from the guest's `bench result` line: any value, even u64::MAX.
    let (lo, hi) = ((first.max(1)) as f64, bin_ceiling(last).max(first.saturating_add(1)) as f64);
    let (lo, hi) = (lo / 1.05, hi * 1.05);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |cycles: f64| round(LEFT + (cycles.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * plot);
    let max = m.histogram.iter().map(|h| h.1).max().unwrap_or(1).max(1) as f64;
    let base = y + 10.0 + BARS;
    for &(floor, count) in &m.histogram {
        let (x0, x1) = (x(floor as f64), x(bin_ceiling(floor) as f64));
        // A bin with samples is never drawn empty.
        let h = round((count as f64 / max * BARS).max(1.5));
        g = g.add(
            Rectangle::new()
                .set("class", "bin")
                .set("x", x0)
                .set("y", round(base - h))
                .set("width", round((x1 - x0 - 0.5).max(0.8)))
                .set("height", h)
                .set("fill", "#4a90d9")
                .add(Title::new(format!("{count} samples from {floor} to {} cycles", bin_ceiling(floor)))),
        );
    }
    g = g.add(
        Line::new().set("x1", LEFT).set("x2", WIDTH - RIGHT).set("y1", base).set("y2", base).set("stroke", "#999"),
    );
    // Axis labels at four places, in cycles and ns.
    let to_ns = |cycles: f64| if tsc_hz == 0 { None } else { Some(cycles * 1e9 / tsc_hz as f64) };
    for i in 0..4 {
        let cycles = (lo.ln() + (hi.ln() - lo.ln()) * f64::from(i) / 3.0).exp();
        let px = x(cycles);
        let label = match to_ns(cycles) {
            Some(t) => format!("{} cyc / {}", short(cycles), ns(t)),
            None => format!("{} cyc", short(cycles)),
        };
        let anchor = match i {
            0 => "start",
            3 => "end",
            _ => "middle",
        };
        g = g
            .add(Line::new().set("x1", px).set("x2", px).set("y1", base).set("y2", base + 4.0).set("stroke", "#999"))
            .add(Text::new(label).set("x", px).set("y", base + 18.0).set("text-anchor", anchor).set("font-size", 12));
    }
    for (what, cycles, color) in [("median", m.median_cycles, "#d32f2f"), ("p99", m.p99_cycles, "#e07b00")] {
        let px = x(cycles as f64);
        g = g
            .add(
                Line::new()
                    .set("class", what)
                    .set("x1", px)
                    .set("x2", px)
                    .set("y1", y + 4.0)
                    .set("y2", base)
                    .set("stroke", color)
                    .set("stroke-width", 2),
            )
            .add(
                Text::new(format!("{what} {}", short(cycles as f64)))
                    .set("x", round(px + 4.0))
                    .set("y", if what == "median" { y + 14.0 } else { y + 30.0 })
                    .set("fill", color)
                    .set("font-size", 12),
            );
    }
    g
}

/// One histogram per measurement, in a column.
pub fn histogram_svg(report: &BenchReport) -> Document {
    let height = 60.0 + ROW * report.results.len() as f64;
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", (0, 0, WIDTH, height))
        .set("font-family", "sans-serif")
        .set("font-size", FONT)
        .add(Rectangle::new().set("width", WIDTH).set("height", height).set("fill", "white"))
        .add(
            Text::new(format!(
                "lde bench on {} ({}): cycles per operation, logarithmic axis",
                report.host.cpu_model, report.host.kvm
            ))
            .set("x", 10)
            .set("y", 24)
            .set("font-size", FONT + 2.0)
            .set("font-weight", "bold"),
        );
    for (i, m) in report.results.iter().enumerate() {
        doc = doc.add(row(m, 40.0 + ROW * i as f64, report.tsc_hz));
    }
    doc
}
