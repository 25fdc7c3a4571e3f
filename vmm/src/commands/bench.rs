//! `lde bench`: runs the measurements, prints the table, writes --json and --histogram,
//! compares the medians with a --baseline and the instruction counts with an --insn-baseline,
//! and writes a --write-insn-baseline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lde::bench::insn_baseline::{self, InsnBaseline};
use lde::bench::{BenchConfig, BenchReport};
use lde::host::{self, HostInfo};
use lde::output::OutputFile;

use super::Error;
use crate::cli::BenchArgs;

/// A JSON file lde wrote: a `--json` report or an instruction baseline.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    lde::files::read_limited(path, lde::files::TEXT_MAX_SIZE)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice::<T>(&text).map_err(|e| e.to_string()))
        .map_err(|e| Error::Baseline(path.to_owned(), e))
}

/// A `--json` file of `lde bench`.
fn read_report(path: &Path) -> Result<BenchReport, Error> {
    read_json(path)
}

/// An `--insn-baseline` file, of the schema this lde writes.
fn read_insn_baseline(path: &Path) -> Result<InsnBaseline, Error> {
    let baseline: InsnBaseline = read_json(path)?;
    if baseline.schema != insn_baseline::SCHEMA {
        let why = format!("its schema is {:?}, not {:?}", baseline.schema, insn_baseline::SCHEMA);
        return Err(Error::Baseline(path.to_owned(), why));
    }
    Ok(baseline)
}

/// `--compare`: the hosts side by side, measuring nothing.
fn compare(files: &[PathBuf], svg_path: Option<&Path>) -> Result<ExitCode, Error> {
    let svg_file = svg_path.map(|p| OutputFile::create(p).map_err(|e| Error::Write(p.to_owned(), e))).transpose()?;
    let reports =
        files.iter().map(|p| Ok((p.display().to_string(), read_report(p)?))).collect::<Result<Vec<_>, Error>>()?;
    print!("{}", lde::bench::compare_table(&reports));
    if let Some(file) = svg_file {
        let path = file.path().to_owned();
        file.commit(|out| svg::write(out, &lde::bench::compare_svg(&reports))).map_err(|e| Error::Write(path, e))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses, before measuring, baselines of another kind of host (cycles of another host or CPU
/// say nothing about this one: `--compare` puts hosts side by side instead) and an instruction
/// baseline to write where this host counts no instructions.
fn refuse_other_hosts(
    args: &BenchArgs,
    baseline: Option<&BenchReport>,
    insn_baseline: Option<&InsnBaseline>,
    host: &HostInfo,
) -> Result<(), Error> {
    if let (Some(path), Some(baseline)) = (&args.insn_baseline, insn_baseline) {
        if baseline.host_kind != host.kvm.slug() {
            let why = format!("it holds for {}, this host is {}", baseline.host_kind, host.kvm.slug());
            return Err(Error::Incomparable(path.clone(), why));
        }
    }
    if let (Some(path), Err(why)) = (&args.write_insn_baseline, lde::bench::insns_counted(host.kvm)) {
        return Err(Error::Incomparable(path.clone(), format!("no instruction counts to keep: {why}")));
    }
    if let (Some(path), Some(baseline)) = (&args.baseline, baseline) {
        if let Some(why) = lde::bench::host_mismatch(baseline, host.kvm.slug(), &host.cpu_model) {
            let why = format!("{why} (lde bench --compare shows hosts side by side)");
            return Err(Error::Incomparable(path.clone(), why));
        }
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<ExitCode, Error> {
    if let (Some(json), Some(svg)) = (&args.json, &args.histogram) {
        if lde::files::same_file(json, svg) {
            return Err(Error::SamePath("--json", "--histogram", json.clone()));
        }
    }
    if !args.compare.is_empty() {
        return compare(&args.compare, args.compare_svg.as_deref());
    }
    if args.floor_once {
        lde::bench::floor_once(&args.kvm_device)?;
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = args.baseline.as_deref().map(read_report).transpose()?;
    let insn_baseline = args.insn_baseline.as_deref().map(read_insn_baseline).transpose()?;
    let names = lde::bench::select(&args.filter, args.insns, args.cpus)?;
    if let (Some(path), Some(baseline)) = (&args.baseline, &baseline) {
        if !baseline.results.iter().any(|b| names.contains(&b.name.as_str())) {
            let why = format!("it has none of the measurements to run ({})", names.join(", "));
            return Err(Error::Incomparable(path.clone(), why));
        }
    }
    // Created before measuring, so that a bad path is said at once.
    let create = |path: &Option<PathBuf>| match path {
        None => Ok(None),
        Some(p) => OutputFile::create(p).map(Some).map_err(|e| Error::Write(p.clone(), e)),
    };
    let (json_file, histogram_file) = (create(&args.json), create(&args.histogram));
    let (json_file, histogram_file) = (json_file?, histogram_file?);
    let insn_baseline_file = create(&args.write_insn_baseline)?;
    let host = host::detect();
    refuse_other_hosts(&args, baseline.as_ref(), insn_baseline.as_ref(), &host)?;
    if !args.quiet {
        eprintln!("lde: host: {} on {}", host.kvm, host.cpu_model);
    }
    let config = BenchConfig {
        filters: args.filter.clone(),
        kvm_device: args.kvm_device.clone(),
        host,
        quiet: args.quiet,
        timeout: Duration::from_secs(300),
        insns_only: args.insns,
        boots: args.boots,
        cpus: args.cpus,
    };
    let report = lde::bench::run(config)?;
    print!("{}", lde::bench::table(&report));
    if let Some(file) = json_file {
        let text = serde_json::to_string_pretty(&report).expect("the bench report serializes");
        let path = file.path().to_owned();
        file.commit(|out| out.write_all((text + "\n").as_bytes())).map_err(|e| Error::Write(path, e))?;
    }
    if let Some(file) = histogram_file {
        let path = file.path().to_owned();
        file.commit(|out| svg::write(out, &lde::bench::histogram_svg(&report))).map_err(|e| Error::Write(path, e))?;
    }
    if let (Some(file), Some(path)) = (insn_baseline_file, &args.write_insn_baseline) {
        let refresh = format!("lde bench --insns --write-insn-baseline {}", path.display());
        let text = serde_json::to_string_pretty(&insn_baseline::from_report(&report, &refresh))
            .expect("an instruction baseline serializes");
        file.commit(|out| out.write_all((text + "\n").as_bytes())).map_err(|e| Error::Write(path.clone(), e))?;
    }
    let cycles = match (&args.baseline, &baseline) {
        (Some(path), Some(baseline)) => check_baseline(&report, baseline, path, args.max_regression)?,
        _ => ExitCode::SUCCESS,
    };
    match (&args.insn_baseline, &insn_baseline) {
        (Some(path), Some(baseline)) if check_insns(&report, baseline, path) => Ok(ExitCode::from(1)),
        _ => Ok(cycles),
    }
}

/// Prints every instruction count compared with the baseline's (stdout: they are results);
/// true when one failed.
fn check_insns(report: &BenchReport, baseline: &InsnBaseline, path: &Path) -> bool {
    let verdicts = insn_baseline::check(baseline, &insn_baseline::counts(report));
    println!("instruction baseline {}: {} on {}", path.display(), baseline.host_kind, baseline.cpu_model);
    for v in &verdicts {
        println!("{}", v.line(&baseline.refresh));
    }
    let failed = verdicts.iter().filter(|v| v.failed()).count();
    println!(
        "compared {} instruction count(s) with the baseline: {failed} failed (growth allowed: {}%, per operation at least {} instructions; stale below -{}% where the boots agreed)",
        verdicts.len(),
        insn_baseline::GROWTH_PERCENT,
        insn_baseline::PER_OP_SLACK,
        insn_baseline::STALE_PERCENT
    );
    failed > 0
}

/// Prints every median compared with the baseline's (stdout: they are results) and fails when
/// one got worse than `max` percent allows, or when nothing could be compared.
fn check_baseline(report: &BenchReport, baseline: &BenchReport, path: &Path, max: f64) -> Result<ExitCode, Error> {
    let comparison = lde::bench::compare(report, baseline);
    if comparison.changes.is_empty() {
        let names = [comparison.not_in_baseline.as_slice(), comparison.unresolved.as_slice()].concat().join(", ");
        return Err(Error::Incomparable(
            path.to_owned(),
            format!("no measurement of this run has a median to compare with one in it ({names})"),
        ));
    }
    if let (Some(then), Some(now)) = (baseline.host.tsc_khz, report.host.tsc_khz) {
        if then != now {
            eprintln!("lde: warning: the baseline's TSC ran at {then} kHz, this host's at {now} kHz: cycles differ by that ratio too");
        }
    }
    println!("baseline {}: {} on {}", path.display(), baseline.host.kvm, baseline.host.cpu_model);
    let (mut worse, mut better) = (0, 0);
    for c in &comparison.changes {
        let verdict = if c.regressed(max) {
            worse += 1;
            "regression"
        } else if c.improved(max) {
            better += 1;
            "improvement"
        } else {
            "unchanged"
        };
        println!(
            "{verdict}: {} median {} cycles, baseline {} ({:+.1}%, allowed {max}%)",
            c.name, c.now, c.baseline, c.percent
        );
    }
    if !comparison.not_in_baseline.is_empty() {
        println!("not in the baseline: {}", comparison.not_in_baseline.join(", "));
    }
    if !comparison.unresolved.is_empty() {
        println!("unresolved here or in the baseline, not compared: {}", comparison.unresolved.join(", "));
    }
    println!(
        "compared {} median(s) with the baseline: {worse} more than {max}% worse, {better} more than {max}% better",
        comparison.changes.len()
    );
    Ok(if worse > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
