//! The machine-readable report of a run (`lde run --report FILE.json`, and what
//! `--api-sock` serves while the guest runs). Its schema is `docs/report.schema.json`.

use super::states::{intervals, time_in_states, transitions, Interval};
use std::collections::BTreeMap;

use lde_abi::stats::{
    ProcStats, StatsPage, END_EXITED, END_KILLED, STATE_DISK, STATE_READING, STATE_READY, STATE_RUNNING,
    STATE_SLEEPING, STATE_WAITING, TIMER_DEADLINE, TIMER_PERIODIC,
};
use lde_abi::syscall::NAMES;
use lde_kcore::trap::mnemonic;
use serde::Serialize;

use crate::host::HostInfo;
use crate::observe::recorder::Recorder;
use crate::vmexit::VmExitTotals;

/// The value of the report's `schema` field.
pub const SCHEMA: &str = "lde-report/1";

#[derive(Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub lde_version: &'static str,
    pub host: Host,
    /// `null` while the guest still runs.
    pub outcome: Option<Outcome>,
    pub timing: Timing,
    pub vm_exits: VmExits,
    /// `null` when the kernel's stats page could not be read.
    pub guest: Option<Guest>,
    /// What each `--disk` device served, disk 0 first (counted by lde; empty in the live
    /// report, whose run has not ended).
    pub disks: Vec<crate::devices::virtio::DiskCounts>,
}

#[derive(Serialize)]
pub struct Host {
    /// `hardware-vmx`, `hardware-svm`, `nested-vmx`, `nested-svm`, `pvm` or `unknown`.
    pub kvm: &'static str,
    pub kvm_description: String,
    pub cpu_model: String,
    /// KVM_GET_TSC_KHZ, when KVM answers it.
    pub tsc_khz: Option<u32>,
}

#[derive(Serialize)]
pub struct Outcome {
    /// `exited`, `crashed`, `timeout` or `interrupted`.
    pub kind: &'static str,
    /// The exit status of `lde`.
    pub exit_code: u8,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Timing {
    /// From lde's start to the kernel's banner.
    pub banner_ms: Option<f64>,
    /// From lde's start to the end of the run (or to now, while it runs).
    pub elapsed_ms: f64,
}

#[derive(Serialize)]
pub struct VmExits {
    /// Exits lde handled itself, by reason.
    pub handled_by_lde: VmExitTotals,
    pub total: u64,
    /// KVM's own statistics of the vCPU (KVM_GET_STATS_FD), `null` where the host offers none.
    pub kvm: Option<BTreeMap<String, u64>>,
}

#[derive(Serialize)]
pub struct Guest {
    pub tsc_hz: u64,
    pub uptime_ms: f64,
    pub idle_ms: f64,
    pub timer: Timer,
    pub doors: Doors,
    /// Traps by vector (only vectors taken at least once).
    pub traps: Vec<Trap>,
    /// System calls by name.
    pub syscalls: BTreeMap<&'static str, u64>,
    pub scheduler: Scheduler,
    /// Every processor that ran processes (one without `--cpus`), by number.
    pub cpus: Vec<Cpu>,
    /// The big kernel lock, taken by every trap with several processors (`null` with one).
    pub kernel_lock: Option<KernelLock>,
    pub processes: Vec<Process>,
    pub disk: GuestDisk,
    pub events: EventCounts,
    pub frames_in_use: u64,
    /// The guest stopped in the middle of updating its counters: some may be from before the
    /// update and some after.
    pub counters_torn: bool,
}

#[derive(Serialize)]
pub struct Timer {
    /// `none`, `periodic` or `deadline`.
    pub mode: &'static str,
    pub hz: u32,
    pub slice_ticks: u32,
    pub ticks: u64,
}

#[derive(Serialize)]
pub struct Doors {
    pub syscall_architectural: u64,
    pub syscall_recovered: u64,
    pub int80_architectural: u64,
    pub int80_recovered: u64,
}

#[derive(Serialize)]
pub struct Trap {
    pub vector: u32,
    pub name: &'static str,
    pub count: u64,
}

#[derive(Serialize)]
pub struct Scheduler {
    pub switches: u64,
    pub kills: u64,
    pub spawned: u64,
    /// Mean TSC cycles of the kernel's timer handler.
    pub tick_cycles_mean: Option<u64>,
    /// Mean TSC cycles of the scheduler's part of a context switch.
    pub switch_cycles_mean: Option<u64>,
}

#[derive(Serialize)]
pub struct Cpu {
    /// Its number (0 = the bootstrap processor).
    pub id: u32,
    pub ticks: u64,
    pub switches: u64,
    /// Time its processes ran in ring 3, and it halted idle (ns of guest TSC time).
    pub user_ns: u64,
    pub idle_ns: u64,
    pub ipis_sent: u64,
    pub ipis_received: u64,
}

#[derive(Serialize)]
pub struct KernelLock {
    pub acquisitions: u64,
    /// Acquisitions that found it held by another processor, and the spins they waited.
    pub contended: u64,
    pub spins: u64,
    /// TLB shootdown requests sent (address spaces freed while another processor held them, and
    /// the boot's timed one-page shootdowns).
    pub tlb_shootdowns: u64,
}

#[derive(Serialize)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    /// `ready`, `running`, `sleeping`, `reading`, `waiting`, `disk`, `ended`.
    pub state: &'static str,
    /// `exited`, `killed`, or `null` while it lives.
    pub end: Option<&'static str>,
    /// Exit status when it exited.
    pub status: Option<u32>,
    /// The trap that killed it (`#GP`) and where.
    pub trap: Option<&'static str>,
    pub rip: Option<u64>,
    pub ticks: u64,
    pub scheduled: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub faults: u64,
    pub user_cycles: u64,
    pub syscalls: BTreeMap<&'static str, u64>,
    pub disk_requests: u64,
    pub disk_bytes: u64,
    /// TSC cycles blocked on disks: from submitting each request to running again.
    pub disk_wait_cycles: u64,
    /// Guest time in each state, from the kernel's event log (`null` if none of its events
    /// were recorded).
    pub time_in_states: Option<TimeInStates>,
}

/// Milliseconds of guest time a process spent running, ready and blocked.
#[derive(Serialize)]
pub struct TimeInStates {
    pub running_ms: f64,
    pub ready_ms: f64,
    pub blocked_ms: f64,
}

/// The kernel's disk counters, all disks together.
#[derive(Serialize)]
pub struct GuestDisk {
    pub requests: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub interrupts: u64,
}

#[derive(Serialize)]
pub struct EventCounts {
    pub written: u64,
    pub recorded: u64,
    pub lost: u64,
}

fn calls(counts: &[u64]) -> BTreeMap<&'static str, u64> {
    NAMES.iter().zip(counts).filter(|(_, &n)| n != 0).map(|(name, &n)| (*name, n)).collect()
}

/// The name of a process state code of the stats page.
pub fn state_name(state: u32) -> &'static str {
    match state {
        STATE_READY => "ready",
        STATE_RUNNING => "running",
        STATE_SLEEPING => "sleeping",
        STATE_READING => "reading",
        STATE_WAITING => "waiting",
        STATE_DISK => "disk",
        _ => "ended",
    }
}

fn process(p: &ProcStats, states: &BTreeMap<u32, Vec<Interval>>, tsc_hz: u64) -> Process {
    let state = state_name(p.state);
    let (end, status, trap, rip) = match p.end {
        END_EXITED => (Some("exited"), Some(p.end_value), None, None),
        END_KILLED => (Some("killed"), None, Some(mnemonic(u64::from(p.end_value))), Some(p.end_rip)),
        _ => (None, None, None, None),
    };
    Process {
        pid: p.pid,
        name: p.name().to_string(),
        state: if end.is_some() { "ended" } else { state },
        end,
        status,
        trap,
        rip,
        ticks: p.ticks,
        scheduled: p.scheduled,
        voluntary_switches: p.voluntary,
        involuntary_switches: p.involuntary,
        faults: p.faults,
        user_cycles: p.user_cycles,
        syscalls: calls(&p.syscalls),
        disk_requests: p.disk_requests,
        disk_bytes: p.disk_bytes,
        disk_wait_cycles: p.disk_wait_cycles,
        time_in_states: states.get(&p.pid).map(|list| {
            let (running, ready, blocked) = time_in_states(list);
            let ms = |cycles: u64| cycles as f64 * 1e3 / tsc_hz.max(1) as f64;
            TimeInStates { running_ms: ms(running), ready_ms: ms(ready), blocked_ms: ms(blocked) }
        }),
    }
}

fn mean(total: u64, count: u64) -> Option<u64> {
    (count > 0).then(|| total / count)
}

/// The processors that ran processes, with their figures.
fn cpus(page: &StatsPage) -> Vec<Cpu> {
    let ns = |cycles: u64| (cycles as f64 * 1e9 / page.tsc_hz.max(1) as f64) as u64;
    page.cpus
        .iter()
        .enumerate()
        .filter(|(_, c)| c.online != 0)
        .map(|(id, c)| Cpu {
            id: id as u32,
            ticks: c.ticks,
            switches: c.switches,
            user_ns: ns(c.user_cycles),
            idle_ns: ns(c.idle_cycles),
            ipis_sent: c.ipis_sent,
            ipis_received: c.ipis_received,
        })
        .collect()
}

/// The guest part of the report, from the recorder's latest page.
pub fn guest(recorder: &Recorder) -> Option<Guest> {
    let page: &StatsPage = recorder.last.as_deref()?;
    let ms = |cycles: u64| cycles as f64 * 1000.0 / page.tsc_hz.max(1) as f64;
    Some(Guest {
        tsc_hz: page.tsc_hz,
        uptime_ms: ms(page.now_tsc.saturating_sub(page.boot_tsc)),
        idle_ms: ms(page.idle_cycles),
        timer: Timer {
            mode: match page.timer_mode {
                TIMER_PERIODIC => "periodic",
                TIMER_DEADLINE => "deadline",
                _ => "none",
            },
            hz: page.timer_hz,
            slice_ticks: page.slice_ticks,
            ticks: page.ticks,
        },
        doors: Doors {
            syscall_architectural: page.syscall_arch,
            syscall_recovered: page.syscall_recovered,
            int80_architectural: page.int80_arch,
            int80_recovered: page.int80_recovered,
        },
        traps: page
            .traps
            .iter()
            .enumerate()
            .filter(|(_, &n)| n != 0)
            .map(|(v, &n)| Trap { vector: v as u32, name: mnemonic(v as u64), count: n })
            .collect(),
        syscalls: calls(&page.calls),
        scheduler: Scheduler {
            switches: page.switches,
            kills: page.kills,
            spawned: page.spawned,
            tick_cycles_mean: mean(page.tick_cycles, page.tick_count),
            switch_cycles_mean: mean(page.switch_cycles, page.switch_count),
        },
        cpus: cpus(page),
        kernel_lock: (page.cpus_online > 1).then_some(KernelLock {
            acquisitions: page.lock_acquisitions,
            contended: page.lock_contended,
            spins: page.lock_spins,
            tlb_shootdowns: page.tlb_shootdowns,
        }),
        processes: {
            let end = recorder.events.iter().map(|e| e.tsc).max().unwrap_or(page.now_tsc);
            let states = intervals(&transitions(&recorder.events), end);
            recorder.processes().iter().map(|p| process(p, &states, page.tsc_hz)).collect()
        },
        disk: GuestDisk {
            requests: page.disk_requests,
            read_bytes: page.disk_read_bytes,
            write_bytes: page.disk_write_bytes,
            interrupts: page.disk_interrupts,
        },
        events: EventCounts {
            written: recorder.events_written(),
            recorded: recorder.events.len() as u64,
            lost: recorder.events_lost,
        },
        frames_in_use: page.frames_in_use,
        counters_torn: recorder.torn,
    })
}

/// The host part of the report.
pub fn host(host: &HostInfo, tsc_khz: Option<u32>) -> Host {
    Host { kvm: host.kvm.slug(), kvm_description: host.kvm.to_string(), cpu_model: host.cpu_model.clone(), tsc_khz }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lde_abi::stats::STATE_ZOMBIE;
    use serde_json::Value;

    const SCHEMA_TEXT: &str = include_str!("../../../docs/report.schema.json");

    /// The strings of the `enum` at `pointer` in docs/report.schema.json.
    fn schema_enum(pointer: &str) -> Vec<String> {
        let schema: Value = serde_json::from_str(SCHEMA_TEXT).expect("the schema is JSON");
        let values = schema.pointer(pointer).unwrap_or_else(|| panic!("no {pointer}"));
        values.as_array().unwrap().iter().filter_map(|v| v.as_str().map(String::from)).collect()
    }

    #[test]
    fn the_schema_names_what_the_code_writes() {
        let calls: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(schema_enum("/$defs/syscalls/propertyNames/enum"), calls);
        let states =
            [STATE_READY, STATE_RUNNING, STATE_SLEEPING, STATE_READING, STATE_WAITING, STATE_DISK, STATE_ZOMBIE];
        let states: Vec<String> = states.iter().map(|&s| state_name(s).to_string()).collect();
        let items = "/properties/guest/properties/processes/items/properties";
        assert_eq!(schema_enum(&format!("{items}/state/enum")), states);
        use crate::host::{KvmKind, Vendor};
        let kinds = [
            KvmKind::Hardware(Vendor::Vmx),
            KvmKind::Hardware(Vendor::Svm),
            KvmKind::Nested(Vendor::Vmx),
            KvmKind::Nested(Vendor::Svm),
            KvmKind::Pvm,
            KvmKind::Unknown,
        ];
        let kinds: Vec<String> = kinds.iter().map(|k| k.slug().to_string()).collect();
        assert_eq!(schema_enum("/properties/host/properties/kvm/enum"), kinds);
        let schema: Value = serde_json::from_str(SCHEMA_TEXT).unwrap();
        assert_eq!(schema.pointer("/properties/schema/const").and_then(Value::as_str), Some(SCHEMA));
    }
}
