//! Keys of the kernel command line that the VMM and `scripts/qemu.sh` pass.
//!
//! The command line is a space-separated list of `key=value` words. Unknown words are reported
//! by the kernel and otherwise ignored.

/// `lde.test=<hook>`: run a deliberate failure instead of the normal boot (for tests).
pub const TEST_KEY: &str = "lde.test";
/// Test hook: the kernel panics after printing its banner.
pub const TEST_PANIC: &str = "panic";
/// Test hook: the kernel loads an empty IDT and raises an exception, so the CPU triple-faults.
pub const TEST_TRIPLE_FAULT: &str = "triple-fault";
/// Test hook: the kernel executes `ud2`, which its own handler reports as a fatal exception.
pub const TEST_KERNEL_FAULT: &str = "kernel-fault";
/// Test hook: the kernel halts with interrupts off and never shuts down (for timeouts).
pub const TEST_HANG: &str = "hang";
/// Test hook: the kernel writes to its own text (read-only: a fatal #PF).
pub const TEST_WRITE_TEXT: &str = "write-text";
/// Test hook: the kernel calls into its own data (no-execute: a fatal #PF).
pub const TEST_EXECUTE_DATA: &str = "execute-data";
/// Test hook: the kernel recurses until its stack overflows into the guard page below it.
pub const TEST_STACK_OVERFLOW: &str = "stack-overflow";
/// Test hook: the kernel sends itself an interrupt on [`STRAY_VECTOR`], which nothing expects,
/// before the first process runs (it must be acknowledged, or it blocks the timer's vector).
pub const TEST_STRAY_INTERRUPT: &str = "stray-interrupt";
/// Test hook: the kernel calls a `ret` in a user page from ring 0, which faults where SMEP is
/// on (`stats: protection smep=on`) and returns where it is not.
pub const TEST_EXECUTE_USER: &str = "execute-user";
/// Test hook: lde (not QEMU) sends the guest an NMI every millisecond while it runs; the kernel
/// counts them (`stats: traps 2:NMI=…`) and no process is blamed. Once every process has ended,
/// the kernel waits until it has counted [`HOST_NMI_COUNT`] before it shuts down, so that the
/// count it reports does not depend on how fast the host sent them.
pub const TEST_HOST_NMI: &str = "host-nmi";
/// The NMIs the kernel waits for under [`TEST_HOST_NMI`].
pub const HOST_NMI_COUNT: u64 = 100;
/// Test hook: the kernel shuts the VM down (with the kernel-panic code) in the middle of an
/// update of its stats page, after setting `ticks` to [`TORN_TICKS`]: lde must still read the
/// counters, marked as possibly torn.
pub const TEST_DIE_MID_UPDATE: &str = "die-mid-update";
/// Test hook: the kernel writes a stats page no honest kernel could: every counter `u64::MAX`,
/// a process slot and an ended process with `u64::MAX` counts, event stamps at both ends of
/// `u64`; its rings' counts near `u64::MAX`, then (after [`HOSTILE_STATS_HOLD_TSC`] cycles,
/// time for lde to read them) wrapped past it to 3. Then it prints
/// [`HOSTILE_STATS_DONE`] and halts for good: lde must neither panic nor print a wrapped figure.
pub const TEST_HOSTILE_STATS: &str = "hostile-stats";
/// The line [`TEST_HOSTILE_STATS`] prints once the page is written.
pub const HOSTILE_STATS_DONE: &str = "kernel: test hook: hostile stats page written";
/// TSC cycles [`TEST_HOSTILE_STATS`] leaves its rings' counts near `u64::MAX` before it wraps
/// them (about a second at 2 GHz).
pub const HOSTILE_STATS_HOLD_TSC: u64 = 1 << 31;
/// Test hook: before the command line's programs, the kernel starts `hello` with no free frame,
/// then one, two, ... until it starts, and reports how often `spawn` ran out of memory and how
/// often it kept a frame it had taken (`kernel: test hook: spawn ran out of memory …`).
pub const TEST_SPAWN_OOM: &str = "spawn-oom";
/// Test hook: with several processors, the kernel frees address spaces without a TLB shootdown,
/// the bug `tlbstale` exists to catch (`kernel: test hook: no TLB shootdowns`).
pub const TEST_NO_SHOOTDOWN: &str = "no-shootdown";
/// Test hook: lde (not QEMU) fills the guest's RAM with [`DIRTY_RAM_BYTE`] before it loads the
/// kernel and does not promise zeroed RAM (no [`ZEROED_RAM_KEY`]`=1`), so that the kernel must
/// zero every frame before use, as on a loader that leaves RAM dirty.
pub const TEST_DIRTY_RAM: &str = "dirty-ram";
/// What [`TEST_DIRTY_RAM`] fills RAM with.
pub const DIRTY_RAM_BYTE: u8 = 0xa5;
/// The `ticks` value [`TEST_DIE_MID_UPDATE`] leaves.
pub const TORN_TICKS: u64 = 424_242;
/// The vector of [`TEST_STRAY_INTERRUPT`]: a higher priority class than the timer's 0x20.
pub const STRAY_VECTOR: u8 = 0x50;
/// `lde.hz=N`: timer interrupts per second; 0 = no timer (cooperative multitasking).
pub const TIMER_HZ_KEY: &str = "lde.hz";
/// `lde.timer=periodic|deadline`: the LAPIC timer mode.
pub const TIMER_MODE_KEY: &str = "lde.timer";
/// `lde.slice=N`: timer ticks a process may run before it is preempted.
pub const SLICE_KEY: &str = "lde.slice";
/// `lde.tsc_khz=N`: the TSC frequency as the VMM knows it (KVM_GET_TSC_KHZ); without it the
/// kernel measures the TSC against the LAPIC timer.
pub const TSC_KHZ_KEY: &str = "lde.tsc_khz";
/// `lde.runaway_ms=N`: the runaway watchdog. A process that has run N ms in ring 3 (measured
/// with the TSC) since its last system call is killed at the next timer tick, `trap=TIMER` (so
/// it needs the timer); 0 = no watchdog, the default.
pub const RUNAWAY_KEY: &str = "lde.runaway_ms";
/// Largest `lde.runaway_ms` (one hour).
pub const RUNAWAY_MAX_MS: u64 = 3_600_000;
/// Accepted `lde.tsc_khz` values: 1 MHz to 100 GHz (outside, the kernel measures the TSC).
pub const TSC_KHZ_RANGE: core::ops::RangeInclusive<u64> = 1_000..=100_000_000;
/// `lde.input=none`: the console has no input; `read` on fd 0 finds its end at once (QEMU
/// keeps serial input open for ever, and has no port that says it ended).
pub const INPUT_KEY: &str = "lde.input";
/// [`INPUT_KEY`]'s value for "no input".
pub const INPUT_NONE: &str = "none";
/// `lde.zeroed_ram=1`: the loader promises that RAM it did not fill (kernel, initrd, boot
/// data) reads as zero, so the kernel need not zero never-used frames. lde's fresh guest
/// memory is; QEMU's is not (firmware tables lie there), so without the key the kernel zeroes
/// every frame before use.
pub const ZEROED_RAM_KEY: &str = "lde.zeroed_ram";
/// Default timer frequency.
pub const DEFAULT_TIMER_HZ: u32 = 50;
/// Default time slice in ticks.
pub const DEFAULT_SLICE: u32 = 1;
/// `lde.milestones=1`: the kernel reports its boot milestones on
/// [`crate::ports::MILESTONE_PORT`] (for `lde bench`; one VM exit each).
pub const MILESTONES_KEY: &str = "lde.milestones";
/// `lde.lapic_khz=N`: the LAPIC timer's rate as the VMM knows it (KVM's in-kernel LAPIC counts
/// at 1 GHz); without it the kernel measures the LAPIC timer against the TSC.
pub const LAPIC_KHZ_KEY: &str = "lde.lapic_khz";
/// `lde.verbose=1`: the kernel also prints what the host reads from its stats page: an `acct`
/// line per process and the `stats:` lines at shutdown (`lde run --kernel-stats`; under QEMU
/// these lines are the only view of the counters).
pub const VERBOSE_KEY: &str = "lde.verbose";
/// `lde.cpus=N`: the VM has N processors (lde passes it only when N > 1, `scripts/qemu.sh` the
/// same); the kernel then reads the MP table and starts the others. Without it the kernel
/// looks for no other processor.
pub const CPUS_KEY: &str = "lde.cpus";
/// `virtio_mmio.device=<size>@<base>:<irq>`: a virtio-mmio device (lde's disks), as Linux reads
/// it; one word per device, in order (at most `virtio::MAX_DISKS` are used).
pub const VIRTIO_MMIO_KEY: &str = "virtio_mmio.device";
