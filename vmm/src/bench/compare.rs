//! `lde bench --compare A.json B.json …`: the `--json` files of several hosts side by side, one
//! row per measurement with each host's median in cycles and ns, labelled by the host's kind of
//! KVM and CPU (trap costs mean most next to each other: PVM, hardware, nested), as a table and
//! as an SVG chart on a logarithmic axis.

use svg::node::element::{Group, Rectangle, Text, Title};
use svg::Document;

use super::output::BenchReport;

/// The column letter of the `i`-th host.
fn letter(i: usize) -> char {
    char::from(b'A' + (i % 26) as u8)
}

/// Every measurement name, in the order the reports first list them.
fn names(reports: &[(String, BenchReport)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, r) in reports {
        for m in &r.results {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    names
}

/// The host of a report in a few words.
fn host_label(r: &BenchReport) -> String {
    let tsc = r.host.tsc_khz.map_or(String::new(), |k| format!(", TSC {:.0} MHz", f64::from(k) / 1e3));
    format!("{} on {}{tsc}", r.host.kvm, r.host.cpu_model)
}

/// The table: the hosts, then a row per measurement with each host's median in cycles and ns
/// (`unresolved` where a host has none, `-` where it lacks the row).
pub fn compare_table(reports: &[(String, BenchReport)]) -> String {
    let mut out = String::from("hosts:\n");
    for (i, (label, r)) in reports.iter().enumerate() {
        out.push_str(&format!("  {}  {label}: {}, lde {}\n", letter(i), host_label(r), r.lde_version));
    }
    out.push_str(&format!("{:<13}", "measurement"));
    for i in 0..reports.len() {
        out.push_str(&format!(" {:>14} {:>12}", format!("{} median cyc", letter(i)), format!("{} ns", letter(i))));
    }
    out.push('\n');
    for name in names(reports) {
        out.push_str(&format!("{name:<13}"));
        for (_, r) in reports {
            match r.results.iter().find(|m| m.name == name) {
                Some(m) if m.unresolved.is_some() => out.push_str(&format!(" {:>14} {:>12}", "unresolved", "-")),
                Some(m) => out.push_str(&format!(" {:>14} {:>12.1}", m.median_cycles, m.median_ns)),
                None => out.push_str(&format!(" {:>14} {:>12}", "-", "-")),
            }
        }
        out.push('\n');
    }
    out
}

const COLORS: [&str; 6] = ["#4a90d9", "#e07b00", "#2e7d32", "#8e44ad", "#d32f2f", "#555555"];

/// The chart: per measurement, one bar per host, its length the median in ns on a logarithmic
/// axis (cycles where a report has no TSC rate); no bar where a host's row is unresolved.
pub fn compare_svg(reports: &[(String, BenchReport)]) -> Document {
    const WIDTH: f64 = 1000.0;
    const LEFT: f64 = 150.0;
    const BAR: f64 = 14.0;
    let names = names(reports);
    let group = BAR * reports.len() as f64 + 12.0;
    let top = 40.0 + 20.0 * reports.len() as f64;
    let height = top + group * names.len() as f64 + 20.0;
    let value = |r: &BenchReport, name: &str| {
        r.results.iter().find(|m| m.name == name && m.unresolved.is_none()).map(|m| {
            if m.median_ns > 0.0 {
                m.median_ns
            } else {
                m.median_cycles as f64
            }
        })
    };
    let all: Vec<f64> = reports.iter().flat_map(|(_, r)| names.iter().filter_map(|n| value(r, n))).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 2.0;
    let hi = all.iter().copied().fold(1.0, f64::max) * 2.0;
    let length = |v: f64| ((v.ln() - lo.ln()) / (hi.ln() - lo.ln()) * (WIDTH - LEFT - 140.0)).max(1.0).round();
    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", height)
        .set("viewBox", (0, 0, WIDTH, height))
        .set("font-family", "sans-serif")
        .set("font-size", 13)
        .add(Rectangle::new().set("width", WIDTH).set("height", height).set("fill", "white"))
        .add(
            Text::new("lde bench: median per operation, by host (logarithmic axis)")
                .set("x", 10)
                .set("y", 22)
                .set("font-size", 16)
                .set("font-weight", "bold"),
        );
    for (i, (label, r)) in reports.iter().enumerate() {
        let y = 44.0 + 20.0 * i as f64;
        doc = doc
            .add(
                Rectangle::new()
                    .set("x", 10)
                    .set("y", y - 11.0)
                    .set("width", 12)
                    .set("height", 12)
                    .set("fill", COLORS[i % COLORS.len()]),
            )
            .add(Text::new(format!("{}  {} ({label})", letter(i), host_label(r))).set("x", 28).set("y", y));
    }
    for (row, name) in names.iter().enumerate() {
        let y0 = top + group * row as f64;
        let mut g = Group::new().set("class", "measurement").set("data-name", name.as_str());
        g = g.add(Text::new(name.as_str()).set("x", 10).set("y", y0 + group / 2.0).set("font-weight", "bold"));
        for (i, (_, r)) in reports.iter().enumerate() {
            let Some(v) = value(r, name) else { continue };
            let y = y0 + BAR * i as f64;
            let unit = if r.tsc_hz > 0 { "ns" } else { "cycles" };
            g = g
                .add(
                    Rectangle::new()
                        .set("x", LEFT)
                        .set("y", y)
                        .set("width", length(v))
                        .set("height", BAR - 2.0)
                        .set("fill", COLORS[i % COLORS.len()])
                        .add(Title::new(format!("{}: {v:.1} {unit}", letter(i)))),
                )
                .add(
                    Text::new(format!("{v:.0} {unit}"))
                        .set("x", LEFT + length(v) + 4.0)
                        .set("y", y + BAR - 3.0)
                        .set("font-size", 11),
                );
        }
        doc = doc.add(g);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::output::{BenchHost, Measurement};

    fn report(kvm: &str, rows: &[(&str, u64)]) -> BenchReport {
        let host = BenchHost {
            kvm: kvm.into(),
            kvm_description: String::new(),
            cpu_model: "CPU".into(),
            tsc_khz: Some(1_000_000),
        };
        let results = rows
            .iter()
            .map(|&(name, median)| Measurement {
                name: name.into(),
                description: String::new(),
                path: String::new(),
                samples: 1,
                per_sample: 1,
                min_cycles: median,
                median_cycles: median,
                p99_cycles: median,
                mean_cycles: median,
                min_ns: median as f64,
                median_ns: median as f64,
                p99_ns: median as f64,
                timer_hz: None,
                histogram: vec![(median, 1)],
                unresolved: None,
            })
            .collect();
        BenchReport::new(host, 1_000_000_000, results)
    }

    #[test]
    fn hosts_side_by_side() {
        let reports = vec![
            ("pvm.json".to_string(), report("pvm", &[("syscall-null", 335_902), ("cpuid", 75_162)])),
            ("hw.json".to_string(), report("hardware-vmx", &[("syscall-null", 120)])),
        ];
        let table = compare_table(&reports);
        assert!(table.contains("  A  pvm.json: pvm on CPU, TSC 1000 MHz, lde 0.1.0\n"), "{table}");
        assert!(table.contains("  B  hw.json: hardware-vmx on CPU"), "{table}");
        let row = table.lines().find(|l| l.starts_with("syscall-null")).unwrap();
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["syscall-null", "335902", "335902.0", "120", "120.0"]);
        let row = table.lines().find(|l| l.starts_with("cpuid")).unwrap();
        assert!(row.ends_with(" - ") || row.trim_end().ends_with('-'), "{row}");
        let svg = compare_svg(&reports).to_string();
        assert_eq!(svg.matches("class=\"measurement\"").count(), 2);
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 3, "background, a key per host, a bar per median");

        let mut reports = reports;
        reports[1].1.results[0].unresolved = Some("below the empty loop".into());
        let table = compare_table(&reports);
        let row = table.lines().find(|l| l.starts_with("syscall-null")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["syscall-null", "335902", "335902.0", "unresolved", "-"]
        );
        assert_eq!(compare_svg(&reports).to_string().matches("<rect").count(), 1 + 2 + 2, "no bar for it");
    }
}
