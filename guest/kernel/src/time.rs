//! Time: the TSC as the clock, and the LAPIC timer as the tick.
//!
//! The TSC frequency comes from the VMM (`lde.tsc_khz`, KVM_GET_TSC_KHZ) and so does the LAPIC
//! timer's (`lde.lapic_khz`: KVM's in-kernel LAPIC counts at 1 GHz, Documentation/virt/kvm);
//! given both, nothing is measured. With only the TSC rate the LAPIC timer is measured against
//! the TSC; with neither (QEMU), the LAPIC timer is taken to count at 1 GHz (QEMU's APIC bus
//! clock) and the TSC is measured against it. A measurement spins for 2 ms.

use lde_abi::cmdline as keys;
use lde_abi::stats::{TIMER_DEADLINE, TIMER_NONE, TIMER_PERIODIC};

use crate::config::Config;
use crate::console::Line;

use crate::arch::cpu::{self, rdtsc};
use crate::arch::lapic;
use crate::counters;
use crate::println;
use crate::sync::Global;

/// The LAPIC timer's assumed rate when the TSC rate is not given.
const DEFAULT_LAPIC_HZ: u64 = 1_000_000_000;
/// Calibration runs for 1/CALIBRATION_FRACTION of a second (2 ms: reading the LAPIC's count
/// takes a few µs even where it is emulated, an error well under 1 %).
const CALIBRATION_FRACTION: u64 = 500;

/// Kernel instructions a timer tick that preempts and switches takes, entry to exit (measured
/// with KVM's `insn_emulation` counter: tick ~160, yield and switch ~390, entry and exit ~40).
const TICK_AND_SWITCH_INSNS: u64 = 600;
/// A tick and a switch may take at most this fraction (1/N) of the timer period: above it the
/// rate is lowered, so that the timer cannot livelock the guest where ring 0 is slow.
const TICK_SHARE_DIVISOR: u64 = 3;
/// TSC cycles of the slowest ring-0 instruction the kernel expects of a host (PVM's emulated
/// instructions take ~1,500–3,000): a rate that keeps the tick share even at this cost is not
/// checked further, which spares the measurement (~700 emulated instructions).
const SLOWEST_INSN_CYCLES: u64 = 20_000;

/// The timer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// No timer: processes run until they make a system call or fault.
    None,
    Periodic,
    Deadline,
}

struct Clock {
    pub tsc_hz: u64,
    pub lapic_hz: u64,
    pub boot_tsc: u64,
    pub mode: TimerMode,
    pub hz: u32,
    pub slice: u32,
    /// TSC cycles between ticks.
    pub tick_tsc: u64,
    /// The next TSC deadline (deadline mode).
    pub next_deadline: u64,
    /// The runaway watchdog: ticks taken in ring 3 without a system call after which a process
    /// is killed (0 = never). Counted in ticks, not TSC time: a host that deschedules the vCPU
    /// for a while lets one tick through for the whole pause (KVM coalesces a periodic LAPIC
    /// timer's missed periods), and a tick counts only after half a period in ring 3
    /// (`tick::decide`), so a process is never blamed for time it did not run.
    pub runaway: Watchdog,
    /// When the timer started.
    pub started: u64,
    /// When the last tick arrived.
    pub last_tick: u64,
    /// A gap between ticks shorter than this (1.5 periods) was one period.
    pub one_period_tsc: u64,
    /// Ticks that came less than 1.5 periods after the one before (or the start).
    pub punctual: u64,
}

static CLOCK: Global<Clock> = Global::new(Clock {
    tsc_hz: 0,
    lapic_hz: 0,
    boot_tsc: 0,
    mode: TimerMode::None,
    hz: 0,
    slice: 1,
    tick_tsc: 0,
    next_deadline: 0,
    runaway: Watchdog { ticks: 0, min_run_tsc: 0 },
    started: 0,
    last_tick: 0,
    one_period_tsc: 0,
    punctual: 0,
});

/// TSC cycles per second.
pub fn tsc_hz() -> u64 {
    CLOCK.with(|c| c.tsc_hz)
}

/// Milliseconds since boot.
pub fn uptime_ms() -> u64 {
    let now = rdtsc();
    CLOCK.with(|c| (now - c.boot_tsc) * 1000 / c.tsc_hz.max(1))
}

/// TSC cycles in `ms` milliseconds.
pub fn ms_to_tsc(ms: u64) -> u64 {
    ms.saturating_mul(tsc_hz()) / 1000
}

/// LAPIC timer ticks in `tsc` TSC cycles (at least 1, at most u32::MAX).
fn tsc_to_lapic(c: &Clock, tsc: u64) -> u32 {
    let ticks = (u128::from(tsc) * u128::from(c.lapic_hz) / u128::from(c.tsc_hz.max(1))) as u64;
    ticks.clamp(1, u64::from(u32::MAX)) as u32
}

/// The highest timer rate the kernel accepts (`lde run --timer-hz` checks the same).
const TIMER_HZ_MAX: u32 = 10_000;

fn parse<T: core::str::FromStr>(value: Option<&str>, key: &str, default: T) -> T {
    match value {
        Some(v) => v.parse().unwrap_or_else(|_| {
            println!("kernel: ignoring {key}={v}: not a number");
            default
        }),
        None => default,
    }
}

/// Measures the clocks and starts the timer as the command line asks.
pub fn init(config: &Config) {
    CLOCK.with(|c| init_clock(c, config));
}

/// A rate in kHz from the command line, 0 if absent or out of range (said so).
fn khz(value: Option<&str>, key: &str) -> u64 {
    let khz: u64 = parse(value, key, 0);
    if khz != 0 && !keys::TSC_KHZ_RANGE.contains(&khz) {
        println!("kernel: ignoring {key}={khz}: out of range; measuring instead");
        return 0;
    }
    khz
}

/// Measures whichever of the two clocks the VMM did not give against the other (the LAPIC at
/// `lapic_khz`, or 1 GHz, when the TSC rate is not given).
fn measure_clocks(c: &mut Clock, tsc_khz: u64, lapic_khz: u64) {
    lapic::start_free_running();
    let (t0, l0) = (rdtsc(), lapic::current_count());
    if tsc_khz != 0 {
        c.tsc_hz = tsc_khz * 1000;
        let end = t0 + c.tsc_hz / CALIBRATION_FRACTION;
        while rdtsc() < end {}
        let (t1, l1) = (rdtsc(), lapic::current_count());
        c.lapic_hz = (u128::from(l0 - l1) * u128::from(c.tsc_hz) / u128::from(t1 - t0)) as u64;
    } else {
        c.lapic_hz = if lapic_khz != 0 { lapic_khz * 1000 } else { DEFAULT_LAPIC_HZ };
        let target = (c.lapic_hz / CALIBRATION_FRACTION) as u32;
        while l0 - lapic::current_count() < target {}
        let (t1, l1) = (rdtsc(), lapic::current_count());
        c.tsc_hz = (u128::from(t1 - t0) * u128::from(c.lapic_hz) / u128::from(l0 - l1)) as u64;
    }
    lapic::stop();
}

/// The timer's settings, each in the order it depends on the ones before, then the line that
/// reports them and their copy in the stats page.
fn init_clock(c: &mut Clock, config: &Config) {
    c.boot_tsc = rdtsc();
    let tsc_from_vmm = set_rates(c, config);
    c.hz = timer_hz(config, c.tsc_hz);
    c.slice = slice_ticks(config);
    c.mode = timer_mode(c.hz, config.timer_mode);
    if c.hz != 0 {
        c.tick_tsc = c.tsc_hz / u64::from(c.hz);
        c.one_period_tsc = c.tick_tsc + c.tick_tsc / 2;
    }
    c.runaway = Watchdog { ticks: watchdog_ticks(config, c.mode, c.hz), min_run_tsc: c.tick_tsc / 2 };
    print_timer(c, tsc_from_vmm);
    publish(c);
}

/// Sets the TSC's and the LAPIC timer's rates: both from the VMM, else measured (see the
/// module's text). Returns whether the TSC's came from the VMM.
fn set_rates(c: &mut Clock, config: &Config) -> bool {
    let tsc_khz = khz(config.tsc_khz, keys::TSC_KHZ_KEY);
    let lapic_khz = khz(config.lapic_khz, keys::LAPIC_KHZ_KEY);
    if tsc_khz != 0 && lapic_khz != 0 {
        c.tsc_hz = tsc_khz * 1000;
        c.lapic_hz = lapic_khz * 1000;
    } else {
        measure_clocks(c, tsc_khz, lapic_khz);
    }
    tsc_khz != 0
}

/// The timer rate the command line asks for, lowered to the most lde accepts and to what a tick
/// and a switch leave of the CPU at `tsc_hz` (said so when lowered).
fn timer_hz(config: &Config, tsc_hz: u64) -> u32 {
    let mut hz = parse(config.hz, keys::TIMER_HZ_KEY, keys::DEFAULT_TIMER_HZ);
    if hz > TIMER_HZ_MAX {
        println!("kernel: timer lowered from {hz} to {TIMER_HZ_MAX} Hz, the most lde accepts");
        hz = TIMER_HZ_MAX;
    }
    let safe = u64::from(hz) * TICK_SHARE_DIVISOR * TICK_AND_SWITCH_INSNS * SLOWEST_INSN_CYCLES <= tsc_hz;
    // Timed only when there is a rate to bound.
    let insn_cycles = if hz != 0 && !safe { cpu::measure_insn_cycles().max(1) } else { 1 };
    let hz_max = (tsc_hz / (TICK_SHARE_DIVISOR * TICK_AND_SWITCH_INSNS * insn_cycles)).max(1) as u32;
    if hz > hz_max {
        println!(
            "kernel: timer lowered from {hz} to {hz_max} Hz: a tick and a switch take about {} us here (a ring-0 instruction {insn_cycles} cycles), more than 1/{TICK_SHARE_DIVISOR} of the period",
            TICK_AND_SWITCH_INSNS * insn_cycles * 1_000_000 / tsc_hz.max(1),
        );
        hz = hz_max;
    }
    hz
}

/// Ticks per time slice from the command line (at least 1).
fn slice_ticks(config: &Config) -> u32 {
    let slice = parse(config.slice, keys::SLICE_KEY, keys::DEFAULT_SLICE);
    if slice == 0 {
        println!("kernel: a slice of 0 ticks means 1");
        return 1;
    }
    slice
}

/// The timer mode `wanted` by the command line (periodic if it names none, or one this CPU
/// lacks), or none at 0 Hz.
fn timer_mode(hz: u32, wanted: Option<&str>) -> TimerMode {
    match (hz, wanted.unwrap_or("periodic")) {
        (0, _) => TimerMode::None,
        (_, "deadline") if lapic::tsc_deadline_supported() => TimerMode::Deadline,
        (_, "deadline") => {
            println!("kernel: this CPU offers no TSC-deadline timer; using periodic mode");
            TimerMode::Periodic
        }
        (_, "periodic") => TimerMode::Periodic,
        (_, other) => {
            println!("kernel: unknown timer mode {other}; using periodic mode");
            TimerMode::Periodic
        }
    }
}

/// The runaway watchdog's limit in ticks from the command line's milliseconds (0 = none: not
/// asked for, too long, or no timer to count with).
fn watchdog_ticks(config: &Config, mode: TimerMode, hz: u32) -> u64 {
    let runaway_ms: u64 = parse(config.runaway_ms, keys::RUNAWAY_KEY, 0);
    if runaway_ms == 0 {
        return 0;
    }
    if runaway_ms > keys::RUNAWAY_MAX_MS {
        println!("kernel: ignoring {}={runaway_ms}: more than {} ms", keys::RUNAWAY_KEY, keys::RUNAWAY_MAX_MS);
        return 0;
    }
    if mode == TimerMode::None {
        println!("kernel: ignoring {}={runaway_ms}: the watchdog needs the timer", keys::RUNAWAY_KEY);
        return 0;
    }
    let ticks = (runaway_ms * u64::from(hz)).div_ceil(1000).max(1);
    println!("kernel: a process that runs {runaway_ms} ms in ring 3 without a system call is killed ({ticks} ticks)");
    ticks
}

/// The timer's line: mode, rate, slice, and both clocks' rates in MHz.
fn print_timer(c: &Clock, tsc_from_vmm: bool) {
    let mode_name = match c.mode {
        TimerMode::None => "none (cooperative: only system calls and faults return the CPU to the kernel)",
        TimerMode::Periodic => "periodic",
        TimerMode::Deadline => "TSC deadline",
    };
    Line::new()
        .str("kernel: timer ")
        .str(mode_name)
        .str(", ")
        .dec(u64::from(c.hz))
        .str(" Hz, slice ")
        .dec(u64::from(c.slice))
        .str(" tick(s); TSC ")
        .thousandths(c.tsc_hz / 1000)
        .str(if tsc_from_vmm { " MHz (from the VMM), LAPIC timer " } else { " MHz (measured), LAPIC timer " })
        .thousandths(c.lapic_hz / 1000)
        .str(" MHz")
        .end();
}

/// The clock's settings in the stats page.
fn publish(c: &Clock) {
    counters::update(|page| {
        page.tsc_hz = c.tsc_hz;
        page.boot_tsc = c.boot_tsc;
        page.now_tsc = c.boot_tsc;
        page.timer_hz = c.hz;
        page.slice_ticks = c.slice;
        page.timer_mode = match c.mode {
            TimerMode::None => TIMER_NONE,
            TimerMode::Periodic => TIMER_PERIODIC,
            TimerMode::Deadline => TIMER_DEADLINE,
        };
    });
}

/// Starts the ticks (interrupts stay off until the first process or the idle loop).
pub fn start() {
    CLOCK.with(|c| {
        if c.mode != TimerMode::None {
            let now = rdtsc();
            c.started = now;
            c.last_tick = now;
            counters::update(|page| page.timer_started_tsc = now);
        }
        match c.mode {
            TimerMode::None => {}
            TimerMode::Periodic => lapic::start_periodic(tsc_to_lapic(c, c.tick_tsc)),
            TimerMode::Deadline => {
                lapic::start_deadline_mode();
                c.next_deadline = rdtsc() + c.tick_tsc;
                lapic::set_deadline(c.next_deadline);
            }
        }
    });
}

/// Starts another processor's ticks: periodic at processor 0's rate on `AP_TIMER_VECTOR`
/// (processor 0's TSC-deadline mode re-arms one clock; the others' ticks only drive preemption).
/// Nothing in cooperative mode.
pub fn start_ap() {
    CLOCK.with(|c| {
        if c.mode != TimerMode::None {
            lapic::start_periodic_on(crate::arch::vectors::AP_TIMER_VECTOR, tsc_to_lapic(c, c.tick_tsc));
        }
    });
}

/// What a tick needs of the clock: whether ticks drive preemption, and the runaway watchdog
/// (read with the tick's one borrow of the clock).
pub struct TickClock {
    pub cooperative: bool,
    pub runaway: Watchdog,
}

/// The runaway watchdog's settings.
#[derive(Clone, Copy)]
pub struct Watchdog {
    /// Ticks in ring 3 without a system call after which a process is killed (0 = never).
    pub ticks: u64,
    /// TSC cycles a process must have run in ring 3 for a tick to count.
    pub min_run_tsc: u64,
}

/// Called on every timer interrupt of processor 0: notes when it came, whether it came a period
/// after the one before, and re-arms a deadline timer.
pub fn on_tick(now: u64) -> TickClock {
    CLOCK.with(|c| {
        if now.wrapping_sub(c.last_tick) < c.one_period_tsc {
            c.punctual += 1;
        }
        c.last_tick = now;
        if c.mode == TimerMode::Deadline {
            // Skip deadlines already past rather than firing a burst of late ticks.
            c.next_deadline += c.tick_tsc;
            if c.next_deadline <= now {
                c.next_deadline = now + c.tick_tsc;
            }
            lapic::set_deadline(c.next_deadline);
        }
        TickClock { cooperative: c.mode == TimerMode::None, runaway: c.runaway }
    })
}

/// Timer periods that passed without a tick of their own up to the last tick, given the
/// `ticks` that came: the periods from the timer's start to the last tick, less the ticks (the
/// host did not run the vCPU, or interrupts were off, across a whole period). Counted from the
/// start rather than from tick to tick, so that a late tick and the punctual one after it count
/// as the two periods they are.
pub fn missed_ticks(ticks: u64) -> u64 {
    CLOCK.with(|c| {
        if c.mode == TimerMode::None {
            // Only sleepers' one-shot wake-ups: no period to miss.
            return 0;
        }
        let periods = (c.last_tick.saturating_sub(c.started) + c.tick_tsc / 2) / c.tick_tsc.max(1);
        periods.saturating_sub(ticks)
    })
}

/// Ticks that came within 1.5 periods of the one before (or of the start): on a host that
/// delays or drops some, most still do; a timer slower than the rate (say, twice the period,
/// which `missed` cannot tell from a host dropping every other tick) has almost none.
pub fn punctual_ticks() -> u64 {
    CLOCK.with(|c| c.punctual)
}

/// The timer mode.
pub fn mode() -> TimerMode {
    CLOCK.with(|c| c.mode)
}

/// The runaway watchdog's settings.
pub fn runaway() -> Watchdog {
    CLOCK.with(|c| c.runaway)
}

/// Ticks per time slice.
pub fn slice() -> u32 {
    CLOCK.with(|c| c.slice)
}

/// Arms a one-shot interrupt at TSC `deadline` (cooperative mode, for sleepers).
pub fn wake_at(deadline: u64) {
    let now = rdtsc();
    lapic::start_one_shot(CLOCK.with(|c| tsc_to_lapic(c, deadline.saturating_sub(now))));
}

/// Stops the ticks for good (at shutdown).
pub fn stop() {
    lapic::stop();
    if mode() != TimerMode::None {
        let now = rdtsc();
        counters::update(|page| page.timer_stopped_tsc = now);
    }
}
