//! `lde bench`: runs the measurements, prints the table, writes --json and --histogram, and
//! compares the medians with a --baseline.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lde::bench::{BenchConfig, BenchReport};
use lde::host;

use super::Error;
use crate::cli::BenchArgs;

pub fn bench(args: BenchArgs) -> Result<ExitCode, Error> {
    if let (Some(json), Some(svg)) = (&args.json, &args.histogram) {
        if lde::files::same_file(json, svg) {
            return Err(Error::SamePath("--json", "--histogram", json.clone()));
        }
    }
    let baseline = match &args.baseline {
        None => None,
        Some(path) => Some(
            lde::files::read_limited(path, lde::files::TEXT_MAX_SIZE)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_slice::<BenchReport>(&text).map_err(|e| e.to_string()))
                .map_err(|e| Error::Baseline(path.clone(), e))?,
        ),
    };
    lde::bench::select(&args.filter)?;
    // Created before measuring, so that a bad path is said at once.
    let create = |path: &Option<PathBuf>| match path {
        None => Ok(None),
        Some(p) => std::fs::File::create(p).map(Some).map_err(|e| Error::Write(p.clone(), e)),
    };
    let (json_file, histogram_file) = (create(&args.json), create(&args.histogram));
    let (json_file, histogram_file) = (json_file?, histogram_file?);
    let host = host::detect();
    if !args.quiet {
        eprintln!("lde bench: host: {} on {}", host.kvm, host.cpu_model);
    }
    let config = BenchConfig {
        filters: args.filter.clone(),
        kvm_device: args.kvm_device.clone(),
        host,
        quiet: args.quiet,
        timeout: Duration::from_secs(300),
    };
    let report = lde::bench::run(config)?;
    print!("{}", lde::bench::table(&report));
    if let (Some(path), Some(mut file)) = (&args.json, json_file) {
        let text = serde_json::to_string_pretty(&report).expect("the bench report serializes");
        file.write_all((text + "\n").as_bytes()).map_err(|e| Error::Write(path.clone(), e))?;
    }
    if let (Some(path), Some(file)) = (&args.histogram, histogram_file) {
        svg::write(file, &lde::bench::histogram_svg(&report)).map_err(|e| Error::Write(path.clone(), e))?;
    }
    if let Some(baseline) = &baseline {
        let worse = lde::bench::regressions(&report, baseline, args.max_regression);
        for r in &worse {
            println!(
                "regression: {} median {} cycles, baseline {} (+{:.1}% > {}%)",
                r.name, r.now, r.baseline, r.percent, args.max_regression
            );
        }
        if !worse.is_empty() {
            return Ok(ExitCode::from(1));
        }
        println!("no median got more than {}% worse than the baseline", args.max_regression);
    }
    Ok(ExitCode::SUCCESS)
}
