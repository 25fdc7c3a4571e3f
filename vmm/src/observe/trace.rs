//! `lde run --trace FILE.json`: the run as Chrome trace-event JSON (`{"traceEvents": [...]}`),
//! which Perfetto (ui.perfetto.dev) and chrome://tracing open. One track per guest process with
//! a complete event (`"ph":"X"`) for each state interval, named after the state, its cause in
//! `args` (and for running, the processor); instant events (`"ph":"i"`) for its system calls and
//! its end; under "processors", a track per processor with what ran on it, its timer ticks and
//! the interrupts that woke a process; metadata events naming every track. Timestamps are µs of
//! guest time (TSC) since the kernel started.

use lde_abi::stats::{Event, EV_FAULT, EV_IDLE, EV_SWITCH_IN, EV_SYSCALL, EV_TICK, EV_WAKE, ON_DISK, ON_INPUT};
use lde_abi::syscall::NAMES;
use serde_json::{json, Value};

use super::recorder::Recorder;
use super::states::{intervals, transitions, Interval, State};

/// The trace's process id for the processors' tracks, one thread per processor (guest pids start
/// at 1).
const CPU_PID: u32 = 0;

/// The trace of the run the recorder followed.
pub fn build(recorder: &Recorder) -> Value {
    let page = recorder.last.as_deref();
    let tsc_hz = page.map_or(1, |p| p.tsc_hz.max(1));
    let boot = page.map_or(0, |p| p.boot_tsc);
    let end = recorder.events.iter().map(|e| e.tsc).max().unwrap_or(boot);
    let us = |tsc: u64| tsc.saturating_sub(boot) as f64 * 1e6 / tsc_hz as f64;
    let names: std::collections::BTreeMap<u32, String> =
        recorder.processes().iter().map(|p| (p.pid, p.name().to_string())).collect();
    let mut events = vec![meta(CPU_PID, "process_name", "processors"), meta(CPU_PID, "process_sort_index", "0")];
    let cpus: std::collections::BTreeSet<u8> = recorder.events.iter().map(|e| e.cpu).chain([0]).collect();
    events.extend(cpus.iter().map(|cpu| {
        json!({"ph": "M", "pid": CPU_PID, "tid": cpu, "name": "thread_name", "args": {"name": format!("cpu {cpu}")}})
    }));
    for (pid, name) in &names {
        events.push(meta(*pid, "process_name", &format!("pid {pid} {name}")));
    }
    for (pid, list) in intervals(&transitions(&recorder.events), end) {
        events.extend(list.iter().map(|i| slice(pid, i, &us)));
    }
    events.extend(recorder.events.iter().filter_map(|e| instant(e, &us)));
    events.extend(cpu_track(&recorder.events, &names, end, &us));
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "source": "lde",
            "events_recorded": recorder.events.len(),
            "events_lost": recorder.events_lost,
        },
    })
}

fn meta(pid: u32, name: &str, value: &str) -> Value {
    match name {
        "process_sort_index" => json!({"ph": "M", "pid": pid, "tid": 0, "name": name, "args": {"sort_index": 0}}),
        _ => json!({"ph": "M", "pid": pid, "tid": 0, "name": name, "args": {"name": value}}),
    }
}

fn slice(pid: u32, i: &Interval, us: &dyn Fn(u64) -> f64) -> Value {
    let name = i.state.label();
    let from = us(i.from);
    let args = match i.state {
        State::Running => json!({"cause": i.cause.name(), "cpu": i.cpu}),
        _ => json!({"cause": i.cause.name()}),
    };
    json!({
        "ph": "X", "pid": pid, "tid": pid, "name": name, "cat": "state",
        "ts": from, "dur": (us(i.to) - from).max(0.0),
        "args": args,
    })
}

/// System calls and faults on their process's track.
fn instant(e: &Event, us: &dyn Fn(u64) -> f64) -> Option<Value> {
    let pid = u32::from(e.pid);
    let name = match e.kind {
        EV_SYSCALL => format!("syscall {}", NAMES.get(e.arg as usize).copied().unwrap_or("unknown")),
        EV_FAULT => format!("killed by {}", lde_kcore::trap::mnemonic(u64::from(e.arg))),
        _ => return None,
    };
    Some(json!({"ph": "i", "s": "t", "pid": pid, "tid": pid, "name": name, "cat": "trap", "ts": us(e.tsc)}))
}

/// Each processor's track: which process ran (from each switch in to the next switch in or idle
/// on that processor), its idle loop, and its timer ticks.
fn cpu_track(
    events: &[Event],
    names: &std::collections::BTreeMap<u32, String>,
    end: u64,
    us: &dyn Fn(u64) -> f64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut current: std::collections::BTreeMap<u8, (String, u64)> = std::collections::BTreeMap::new();
    let close = |current: &mut std::collections::BTreeMap<u8, (String, u64)>,
                 cpu: u8,
                 at: u64,
                 out: &mut Vec<Value>| {
        if let Some((name, from)) = current.remove(&cpu) {
            let ts = us(from);
            out.push(json!({"ph": "X", "pid": CPU_PID, "tid": cpu, "name": name, "cat": "cpu", "ts": ts, "dur": (us(at.max(from)) - ts).max(0.0)}));
        }
    };
    for e in events {
        let cpu = e.cpu;
        match e.kind {
            EV_SWITCH_IN => {
                close(&mut current, cpu, e.tsc, &mut out);
                let pid = u32::from(e.pid);
                let name = names.get(&pid).map_or_else(|| format!("pid {pid}"), |n| format!("pid {pid} {n}"));
                current.insert(cpu, (name, e.tsc));
            }
            EV_IDLE => {
                close(&mut current, cpu, e.tsc, &mut out);
                current.insert(cpu, ("idle".to_string(), e.tsc));
            }
            EV_TICK => out.push(json!({"ph": "i", "s": "t", "pid": CPU_PID, "tid": cpu, "name": "timer tick", "cat": "irq", "ts": us(e.tsc)})),
            // A wake-up by an interrupt: the serial line's (input) or a disk's.
            EV_WAKE if e.arg == ON_INPUT || e.arg == ON_DISK => {
                let name = if e.arg == ON_INPUT { "input interrupt" } else { "disk interrupt" };
                out.push(json!({"ph": "i", "s": "t", "pid": CPU_PID, "tid": cpu, "name": name, "cat": "irq", "ts": us(e.tsc), "args": {"woke": e.pid}}));
            }
            _ => {}
        }
    }
    let open: Vec<u8> = current.keys().copied().collect();
    for cpu in open {
        close(&mut current, cpu, end, &mut out);
    }
    out
}
