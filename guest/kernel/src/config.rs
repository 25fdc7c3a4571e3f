//! The kernel command line, read once at boot into a table of the words the kernel knows.
//!
//! Every later question ("which timer rate?", "which test hook?") is answered from the table,
//! not by scanning the line again: on hosts where every kernel instruction is emulated a scan
//! costs ~10 instructions a byte. The `lde.run` words are not copied: [`Config::runs`] is the
//! part of the line from the first of them to the end of the last, and the kernel walks it once,
//! program by program (the words after the last program are never scanned again: looking for a
//! next program there cost every start and every end of a process ~1,600 emulated instructions).

use lde_abi::cmdline as keys;
use lde_abi::virtio::MAX_DISKS;
use lde_kcore::args::RUN_KEY;
use lde_kcore::cmdline;

/// The values of the known keys (the last word wins, as with [`cmdline::value`]).
#[derive(Clone, Copy, Default)]
pub struct Config {
    pub test: Option<&'static str>,
    pub hz: Option<&'static str>,
    pub timer_mode: Option<&'static str>,
    pub slice: Option<&'static str>,
    pub tsc_khz: Option<&'static str>,
    pub lapic_khz: Option<&'static str>,
    pub runaway_ms: Option<&'static str>,
    /// `lde.cpus`: the processors to start (absent: only the bootstrap processor runs).
    pub cpus: Option<&'static str>,
    pub input_none: bool,
    pub zeroed_ram: bool,
    pub milestones: bool,
    pub verbose: bool,
    /// Number of `lde.run` words.
    pub programs: usize,
    /// The line from the first `lde.run` word to the end of the last (empty if there is none).
    pub runs: &'static str,
    /// The values of the `virtio_mmio.device` words (the disks), in order.
    pub disks: [&'static str; MAX_DISKS],
    pub disk_count: usize,
}

impl Config {
    /// The `virtio_mmio.device` values, disk 0 first.
    pub fn disks(&self) -> &[&'static str] {
        &self.disks[..self.disk_count]
    }
}

/// Reads `line` once.
pub fn parse(line: &'static str) -> Config {
    let mut c = Config::default();
    // Offsets in `line` of the first `lde.run` word and of the end of the last.
    let (mut first, mut last_end) = (0, 0);
    let offset = |s: &str| s.as_ptr() as usize - line.as_ptr() as usize;
    for (key, value) in cmdline::words(line) {
        match key {
            RUN_KEY => {
                if c.programs == 0 {
                    first = offset(key);
                }
                // A bare `lde.run` has no `=`: its value is no slice of `line`.
                last_end = if value.is_empty() { offset(key) + key.len() } else { offset(value) + value.len() };
                c.programs += 1;
            }
            keys::TEST_KEY => c.test = Some(value),
            keys::TIMER_HZ_KEY => c.hz = Some(value),
            keys::TIMER_MODE_KEY => c.timer_mode = Some(value),
            keys::SLICE_KEY => c.slice = Some(value),
            keys::TSC_KHZ_KEY => c.tsc_khz = Some(value),
            keys::LAPIC_KHZ_KEY => c.lapic_khz = Some(value),
            keys::RUNAWAY_KEY => c.runaway_ms = Some(value),
            keys::CPUS_KEY => c.cpus = Some(value),
            keys::INPUT_KEY => c.input_none = value == keys::INPUT_NONE,
            keys::ZEROED_RAM_KEY => c.zeroed_ram = value == "1",
            keys::MILESTONES_KEY => c.milestones = value == "1",
            keys::VERBOSE_KEY => c.verbose = value == "1",
            keys::VIRTIO_MMIO_KEY if c.disk_count < MAX_DISKS => {
                c.disks[c.disk_count] = value;
                c.disk_count += 1;
            }
            _ => {}
        }
    }
    // Both offsets are ends or starts of words of `line`, at character boundaries.
    c.runs = &line[first..last_end];
    c
}

/// The next `lde.run` value in `*runs`, which moves past it.
pub fn next_run(runs: &mut &'static str) -> Option<&'static str> {
    let mut words = cmdline::words(runs);
    while let Some((key, value)) = words.next() {
        if key == RUN_KEY {
            *runs = words.rest();
            return Some(value);
        }
    }
    *runs = "";
    None
}
