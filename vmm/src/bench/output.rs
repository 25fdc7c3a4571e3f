//! What `lde bench` reports and how: the report's types (the `--json` form, schema
//! `lde-bench/1`, which `--baseline` reads back), the table it prints, and the SVG histograms.

use serde::{Deserialize, Serialize};
use svg::node::element::{Group, Line, Rectangle, Text};
use svg::Document;

/// One measured operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub description: String,
    /// How the operation reached the kernel or the hypervisor on this host.
    pub path: String,
    pub samples: u64,
    /// Operations timed together in one sample.
    pub per_sample: u64,
    pub min_cycles: u64,
    pub median_cycles: u64,
    pub p99_cycles: u64,
    pub mean_cycles: u64,
    pub min_ns: f64,
    pub median_ns: f64,
    pub p99_ns: f64,
    /// The guest's timer rate during the measurement (null for host measurements).
    pub timer_hz: Option<u32>,
    /// Samples per power-of-two bucket: `[bucket, count]`, bucket b holding [2^b, 2^(b+1)) cycles.
    pub histogram: Vec<(u32, u64)>,
}

/// What `lde bench --json` writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub lde_version: String,
    pub host: BenchHost,
    pub tsc_hz: u64,
    pub results: Vec<Measurement>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchHost {
    pub kvm: String,
    pub kvm_description: String,
    pub cpu_model: String,
    pub tsc_khz: Option<u32>,
}

/// The table `lde bench` prints.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "host: {} on {}, TSC {} kHz\n",
        report.host.kvm_description,
        report.host.cpu_model,
        report.host.tsc_khz.map_or("?".to_string(), |k| k.to_string())
    ));
    out.push_str(&format!(
        "{:<13} {:>12} {:>12} {:>12} {:>11} {:>7}  {}\n",
        "measurement", "min cyc", "median cyc", "p99 cyc", "median ns", "n", "path"
    ));
    for m in &report.results {
        out.push_str(&format!(
            "{:<13} {:>12} {:>12} {:>12} {:>11.1} {:>7}  {}\n",
            m.name, m.min_cycles, m.median_cycles, m.p99_cycles, m.median_ns, m.samples, m.path
        ));
    }
    out
}

/// One histogram per measurement, in a column.
pub fn histogram_svg(report: &BenchReport) -> Document {
    const W: f64 = 900.0;
    const ROW: f64 = 110.0;
    const LEFT: f64 = 160.0;
    let height = 50.0 + ROW * report.results.len() as f64;
    let mut doc = Document::new()
        .set("width", W)
        .set("height", height)
        .set("viewBox", (0, 0, W, height))
        .set("font-family", "sans-serif")
        .set("font-size", 11)
        .add(Rectangle::new().set("width", W).set("height", height).set("fill", "white"))
        .add(
            Text::new(format!("lde bench on {} ({})", report.host.cpu_model, report.host.kvm))
                .set("x", 10)
                .set("y", 20)
                .set("font-size", 14),
        );
    let lo = report.results.iter().flat_map(|m| m.histogram.iter().map(|h| h.0)).min().unwrap_or(0);
    let hi = report.results.iter().flat_map(|m| m.histogram.iter().map(|h| h.0)).max().unwrap_or(1).max(lo + 1);
    let bucket_w = (W - LEFT - 20.0) / f64::from(hi - lo + 1);
    for (i, m) in report.results.iter().enumerate() {
        let y0 = 40.0 + ROW * i as f64;
        let max = m.histogram.iter().map(|h| h.1).max().unwrap_or(1).max(1);
        let mut g = Group::new().set("class", "histogram").set("data-name", m.name.as_str());
        g = g.add(Text::new(m.name.as_str()).set("x", 10).set("y", y0 + 40.0).set("font-weight", "bold"));
        g = g.add(Text::new(format!("median {} cyc", m.median_cycles)).set("x", 10).set("y", y0 + 56.0));
        for &(b, c) in &m.histogram {
            let h = c as f64 / max as f64 * (ROW - 35.0);
            g = g.add(
                Rectangle::new()
                    .set("x", LEFT + f64::from(b - lo) * bucket_w)
                    .set("y", y0 + ROW - 30.0 - h)
                    .set("width", bucket_w - 2.0)
                    .set("height", h)
                    .set("fill", "#4a90d9"),
            );
        }
        g = g.add(
            Line::new()
                .set("x1", LEFT)
                .set("x2", W - 20.0)
                .set("y1", y0 + ROW - 30.0)
                .set("y2", y0 + ROW - 30.0)
                .set("stroke", "#999"),
        );
        for b in lo..=hi {
            g = g.add(
                Text::new(format!("2^{b}"))
                    .set("x", LEFT + f64::from(b - lo) * bucket_w + bucket_w / 2.0)
                    .set("y", y0 + ROW - 17.0)
                    .set("text-anchor", "middle")
                    .set("font-size", 9),
            );
        }
        doc = doc.add(g);
    }
    doc
}
