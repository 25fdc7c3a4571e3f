//! Processes: loading a program from the initrd into a fresh address space, the scheduler
//! loop, and the ways a process gives up the CPU (yield, preemption, sleep, read, exit, kill).
//!
//! The scheduler runs on the boot stack. A process runs on its own kernel stack in the kernel
//! (its TrapFrame at the top) and switches to the scheduler with `switch_context` whenever it
//! gives up the CPU; the scheduler switches back to whichever process is next (xv6's design).

use lde_abi::stats::{self as ev, OUT_BLOCK, OUT_END, OUT_PREEMPT, OUT_YIELD};
use lde_abi::user::{AT_LDE_TSC_HZ, USER_STACK_SIZE, USER_STACK_TOP};
use lde_kcore::args::{build_start_frame, Spec, FRAME_PAGE_SIZE, RUN_KEY};
use lde_kcore::cmdline;
use lde_kcore::elf::{self, ElfError};
use lde_kcore::proc::{End, State, Table, MAX_PROCS};
use lde_kcore::{cpio, trap::mnemonic};

use crate::arch::fpu::FxArea;
use crate::arch::gdt::{self, USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use crate::arch::mem;
use crate::arch::paging::{self, AddressSpace, OutOfMemory, PageFlags};
use crate::arch::switch::{new_process_stack, switch};
use crate::arch::syscall;
use crate::arch::trap::TrapFrame;
use crate::mm::Frames;
use crate::stats::{self, print_acct, publish};
use crate::sync::Global;
use crate::time::{self, rdtsc};
use crate::{idle, println};

/// Size of each process's kernel stack.
pub const KSTACK_SIZE: usize = 16 * 1024;
const PAGE: u64 = 4096;
/// RFLAGS of a new process: IF set, IOPL 0 (PVM faults on any other IOPL).
const USER_RFLAGS: u64 = 0x202;

/// Per-process hardware context.
pub struct Hw {
    /// RSP saved by `switch_context` while the process is not running.
    pub saved_rsp: u64,
    pub space: Option<AddressSpace>,
    /// x87/SSE registers while the process is not running.
    pub fx: FxArea,
    /// Ticks left in the current time slice.
    pub slice_left: u32,
    /// An exception at `.0` resumes at `.1` (the `fixup` system call).
    pub fixup: Option<(u64, u64)>,
}

/// Everything the kernel keeps.
pub struct Kernel {
    pub procs: Table,
    pub hw: [Hw; MAX_PROCS],
    pub frames: Frames,
    pub initrd: &'static [u8],
    /// Programs of the command line that could not be started.
    pub spawn_failures: u32,
    /// The kernel command line, whose `lde.run` words name the programs to run.
    pub cmdline: &'static str,
    /// How many of those words have been started (or failed to).
    pub started: usize,
    /// The scheduler's RSP while a process runs.
    pub sched_rsp: u64,
    /// TSC when the kernel last returned to ring 3 (for user-time accounting).
    pub user_entry_tsc: u64,
    /// The earliest deadline of a sleeping process.
    pub next_wake: Option<u64>,
    /// TSC when the last process gave up the CPU (0 once the scheduler idled since).
    pub switch_out_tsc: u64,
}

pub static KERNEL: Global<Kernel> = Global::new(Kernel {
    procs: Table::new(),
    hw: [const { Hw { saved_rsp: 0, space: None, fx: FxArea::INITIAL, slice_left: 0, fixup: None } }; MAX_PROCS],
    frames: Frames::empty(),
    initrd: &[],
    spawn_failures: 0,
    cmdline: "",
    started: 0,
    sched_rsp: 0,
    user_entry_tsc: 0,
    next_wake: None,
    switch_out_tsc: 0,
});

#[repr(C, align(16))]
struct KernelStacks([[u8; KSTACK_SIZE]; MAX_PROCS]);

/// The kernel stacks, one per process slot; only reached through raw addresses.
static KSTACKS: Global<KernelStacks> = Global::new(KernelStacks([[0; KSTACK_SIZE]; MAX_PROCS]));

/// Top (exclusive) of slot `slot`'s kernel stack.
pub fn kstack_top(slot: usize) -> u64 {
    // SAFETY: only the address is computed; the bytes are touched by the CPU and by
    // `prepare_kernel_stack` for a slot that is not running.
    let base = unsafe { KSTACKS.get().0.as_ptr() } as u64;
    base + ((slot + 1) * KSTACK_SIZE) as u64
}

/// Why a program could not be started.
pub enum SpawnError {
    NotFound,
    Elf(ElfError),
    Args(lde_kcore::args::ArgsError),
    TooManyProcesses,
    OutOfMemory,
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::NotFound => write!(f, "no such program in the initrd"),
            SpawnError::Elf(e) => write!(f, "bad ELF: {e}"),
            SpawnError::Args(e) => write!(f, "bad arguments: {e}"),
            SpawnError::TooManyProcesses => write!(f, "the process table is full"),
            SpawnError::OutOfMemory => write!(f, "out of memory"),
        }
    }
}

impl From<OutOfMemory> for SpawnError {
    fn from(_: OutOfMemory) -> Self {
        SpawnError::OutOfMemory
    }
}

/// The programs the command line names (`lde.run=<spec>` words), in order.
fn run_words(cmdline: &'static str) -> impl Iterator<Item = &'static str> {
    cmdline::words(cmdline).filter(|(key, _)| *key == RUN_KEY).map(|(_, value)| value)
}

/// Number of programs the command line names.
pub fn program_count(k: &Kernel) -> usize {
    run_words(k.cmdline).count()
}

/// Starts the next programs of the command line while the process table has room. A program
/// that cannot start gets one line, `failed name=… reason=…`, and counts as failed.
pub fn spawn_pending(k: &mut Kernel) {
    while k.procs.live_count() < MAX_PROCS {
        let Some(value) = run_words(k.cmdline).nth(k.started) else { return };
        k.started += 1;
        match Spec::decode(value) {
            Ok(spec) => {
                if let Err(e) = spawn(k, &spec, 0) {
                    k.spawn_failures += 1;
                    println!("failed name={} reason={e}", spec.name());
                }
            }
            Err(e) => {
                k.spawn_failures += 1;
                println!("failed name=? reason=bad program spec: {e}");
            }
        }
    }
}

/// Starts the program `spec` names; `parent` is the spawning pid (0 = the kernel). Returns the
/// new process's pid.
pub fn spawn(k: &mut Kernel, spec: &Spec, parent: u32) -> Result<u32, SpawnError> {
    let file = cpio::find(k.initrd, spec.name()).ok_or(SpawnError::NotFound)?;
    let image = elf::parse(file).map_err(SpawnError::Elf)?;
    let slot = k.procs.alloc(spec.name()).ok_or(SpawnError::TooManyProcesses)?;
    let mut space = match AddressSpace::new(&mut k.frames) {
        Ok(space) => space,
        Err(e) => {
            k.procs.reap(slot);
            return Err(e.into());
        }
    };
    match load(&mut k.frames, &mut space, &image, file, spec) {
        Ok(user_rsp) => {
            let top = kstack_top(slot);
            let hw = &mut k.hw[slot];
            // SAFETY: the slot is not running; its kernel stack is unused.
            hw.saved_rsp = unsafe { prepare_kernel_stack(top, image.entry, user_rsp) };
            hw.space = Some(space);
            hw.fx = FxArea::INITIAL;
            hw.slice_left = time::slice();
            hw.fixup = None;
            k.procs.make_ready(slot);
            let pid = k.procs.get(slot).pid;
            let in_use = k.frames.in_use();
            stats::update(|page| {
                page.spawned += 1;
                page.frames_in_use = in_use;
                publish(page, slot, k.procs.get(slot));
                stats::event(page, rdtsc(), ev::EV_SPAWN, pid, parent);
            });
            Ok(pid)
        }
        Err(e) => {
            space.destroy(&mut k.frames);
            k.procs.reap(slot);
            Err(e)
        }
    }
}

/// Copies the segments and builds the stack; returns the initial user RSP.
fn load(
    frames: &mut Frames,
    space: &mut AddressSpace,
    image: &elf::UserImage,
    file: &[u8],
    spec: &Spec,
) -> Result<u64, SpawnError> {
    for seg in image.segments() {
        let flags = PageFlags { writable: seg.writable, executable: seg.executable };
        let file_end = seg.vaddr + seg.file_size;
        let mut page = seg.page_start();
        while page < seg.page_end() {
            let frame = frames.alloc_zeroed().ok_or(OutOfMemory)?;
            // The part of [vaddr, file_end) that falls in this page comes from the file.
            let from = page.max(seg.vaddr);
            let to = (page + PAGE).min(file_end);
            if from < to {
                let src = &file[(seg.file_offset + (from - seg.vaddr)) as usize..][..(to - from) as usize];
                // SAFETY: frame is a fresh identity-mapped page; the range lies inside it.
                unsafe { mem::copy((frame + (from - page)) as *mut u8, src.as_ptr(), src.len()) };
            }
            space.map(frames, page, frame, flags)?;
            page += PAGE;
        }
    }
    let stack_flags = PageFlags { writable: true, executable: false };
    let mut top_frame = 0;
    let mut page = USER_STACK_TOP - USER_STACK_SIZE;
    while page < USER_STACK_TOP {
        let frame = frames.alloc_zeroed().ok_or(OutOfMemory)?;
        space.map(frames, page, frame, stack_flags)?;
        top_frame = frame;
        page += PAGE;
    }
    // SAFETY: top_frame is the stack's top page, fresh and identity-mapped, owned by this space.
    let top_page = unsafe { &mut *(top_frame as *mut [u8; FRAME_PAGE_SIZE]) };
    let auxv = [(AT_LDE_TSC_HZ, time::tsc_hz())];
    build_start_frame(spec.words(), &auxv, USER_STACK_TOP, top_page).map_err(SpawnError::Args)
}

/// Builds the first TrapFrame (ring 3 at `entry` with `user_rsp`) at the top of the kernel
/// stack ending at `top`, and the switch frame below it. Returns the RSP to switch to.
///
/// # Safety
/// The kernel stack must belong to a slot that is not running.
unsafe fn prepare_kernel_stack(top: u64, entry: u64, user_rsp: u64) -> u64 {
    let frame_addr = top - core::mem::size_of::<TrapFrame>() as u64;
    let frame = TrapFrame {
        rip: entry,
        cs: u64::from(USER_CODE_SELECTOR),
        rflags: USER_RFLAGS,
        rsp: user_rsp,
        ss: u64::from(USER_DATA_SELECTOR),
        ..TrapFrame::default()
    };
    // SAFETY: the frame lies at the top of the slot's own kernel stack (caller's contract);
    // the stack is 16-byte aligned and so is the frame's size.
    unsafe {
        (frame_addr as *mut TrapFrame).write(frame);
        new_process_stack(frame_addr)
    }
}

/// Runs processes until none is left; returns whether any failed.
pub fn run_scheduler() -> bool {
    loop {
        // SAFETY: interrupts are off in the scheduler; the reference ends before the switch.
        let k = unsafe { KERNEL.get() };
        wake_due_sleepers(k, rdtsc());
        let Some(slot) = k.procs.pick_next() else {
            if k.procs.live_count() == 0 {
                return k.spawn_failures > 0 || any_failed(&k.procs);
            }
            k.switch_out_tsc = 0;
            idle::wait_for_work(k.next_wake);
            continue;
        };
        let top = kstack_top(slot);
        // SAFETY: the TSS and syscall stack now name the stack of the process about to run,
        // with interrupts off.
        unsafe { gdt::set_kernel_stack(x86_64::VirtAddr::new(top)) };
        syscall::set_kernel_stack(top);
        let hw = &mut k.hw[slot];
        hw.space.as_ref().expect("a ready process has an address space").activate();
        hw.fx.restore();
        let next = hw.saved_rsp;
        let pid = k.procs.get(slot).pid;
        let now = rdtsc();
        k.user_entry_tsc = now;
        let out = core::mem::take(&mut k.switch_out_tsc);
        stats::update(|page| {
            if out != 0 {
                page.switch_cycles += now - out;
                page.switch_count += 1;
            }
            page.switches += 1;
            page.current_pid = pid;
            page.now_tsc = now;
            // Only what switching in changed; the rest is published when it switches out.
            page.procs[slot].state = ev::STATE_RUNNING;
            page.procs[slot].scheduled = k.procs.get(slot).acct.scheduled;
            stats::event(page, now, ev::EV_SWITCH_IN, pid, 0);
        });
        let sched_save: *mut u64 = &mut k.sched_rsp;
        // SAFETY: `next` was saved by switch_context or built by prepare_kernel_stack for this
        // slot; `sched_save` is in a static. The process switches back to sched_rsp.
        unsafe { switch(sched_save, next) };

        // SAFETY: back on the scheduler stack, interrupts off; a new reference.
        let k = unsafe { KERNEL.get() };
        k.hw[slot].fx.save();
        if k.procs.get(slot).state == State::Zombie {
            paging::activate_kernel();
            if let Some(space) = k.hw[slot].space.take() {
                space.destroy(&mut k.frames);
            }
            let in_use = k.frames.in_use();
            stats::update(|page| {
                page.current_pid = 0;
                page.frames_in_use = in_use;
                publish(page, slot, k.procs.get(slot));
            });
            k.procs.reap(slot);
            spawn_pending(k);
        } else {
            stats::update(|page| {
                page.current_pid = 0;
                stats::publish_counters(page, slot, k.procs.get(slot));
            });
        }
    }
}

/// Makes sleepers whose deadline has passed ready.
pub fn wake_due_sleepers(k: &mut Kernel, now: u64) {
    if k.next_wake.is_some_and(|t| t <= now) {
        let procs = &mut k.procs;
        let mut woken = [0u32; MAX_PROCS];
        let mut n = 0;
        let pids: [u32; MAX_PROCS] = core::array::from_fn(|s| procs.get(s).pid);
        k.next_wake = procs.wake_sleepers(now, |slot| {
            woken[n] = pids[slot];
            n += 1;
        });
        stats::update(|page| {
            for &pid in &woken[..n] {
                stats::event(page, now, ev::EV_WAKE, pid, 0);
            }
        });
    }
}

/// Makes every process blocked in `read` ready.
pub fn wake_readers(k: &mut Kernel) {
    let now = rdtsc();
    let pids: [u32; MAX_PROCS] = core::array::from_fn(|s| k.procs.get(s).pid);
    k.procs.wake_readers(|slot| stats::update(|page| stats::event(page, now, ev::EV_WAKE, pids[slot], 1)));
}

fn any_failed(procs: &Table) -> bool {
    (0..MAX_PROCS).any(|s| procs.get(s).end.is_some_and(|e| e.failed()))
}

/// Switches from the running process (whose state the caller has already changed) to the
/// scheduler, logging why; returns when the scheduler runs the process again.
///
/// # Safety
/// Must run on the current process's kernel stack with interrupts off, and no reference from
/// `KERNEL.get()` may be alive.
pub unsafe fn switch_to_scheduler(slot: usize, why: u32) {
    // SAFETY: interrupts off; the reference ends before the switch.
    let (save, sched) = unsafe {
        let k = KERNEL.get();
        let pid = k.procs.get(slot).pid;
        let now = rdtsc();
        // An ending process's switch includes freeing its memory: not a plain switch.
        k.switch_out_tsc = if why == OUT_END { 0 } else { now };
        stats::update(|page| stats::event(page, now, ev::EV_SWITCH_OUT, pid, why));
        (&mut k.hw[slot].saved_rsp as *mut u64, k.sched_rsp)
    };
    // SAFETY: sched_rsp was saved by the scheduler's switch into this process.
    unsafe { switch(save, sched) };
}

/// The running process gives up the rest of its slice (`voluntary`) or is preempted.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn yield_current(voluntary: bool) {
    // SAFETY: interrupts off; the reference ends before the switch.
    let slot = unsafe {
        let k = KERNEL.get();
        let slot = k.procs.current().expect("a process is running");
        k.procs.preempt_current(voluntary);
        k.hw[slot].slice_left = time::slice();
        slot
    };
    // SAFETY: the caller's contract.
    unsafe { switch_to_scheduler(slot, if voluntary { OUT_YIELD } else { OUT_PREEMPT }) };
}

/// The running process blocks in `state` (sleeping or reading) until woken.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn block_current(state: State) {
    // SAFETY: interrupts off; the reference ends before the switch.
    let slot = unsafe {
        let k = KERNEL.get();
        let slot = k.procs.current().expect("a process is running");
        let pid = k.procs.get(slot).pid;
        if let State::Sleeping { until } = state {
            k.next_wake = Some(k.next_wake.map_or(until, |t| t.min(until)));
        }
        k.procs.block_current(state);
        let what = if matches!(state, State::Reading) { 1 } else { 0 };
        stats::update(|page| stats::event(page, rdtsc(), ev::EV_BLOCK, pid, what));
        slot
    };
    // SAFETY: the caller's contract.
    unsafe { switch_to_scheduler(slot, OUT_BLOCK) };
}

/// Ends the running process with `end`, printing its line and its accounting, and never
/// returns to it.
///
/// # Safety
/// As for [`switch_to_scheduler`].
pub unsafe fn end_current(end: End) -> ! {
    // SAFETY: interrupts off; the reference ends before the switch.
    let slot = unsafe {
        let k = KERNEL.get();
        let slot = k.procs.end_current(end).expect("a process is running");
        let p = k.procs.get(slot);
        let now = rdtsc();
        stats::update(|page| stats::record_end(page, p));
        match end {
            End::Exited(status) => {
                println!("exit pid={} name={} status={status}", p.pid, p.name());
                stats::update(|page| stats::event(page, now, ev::EV_EXIT, p.pid, u32::from(status)));
            }
            End::Killed { vector, rip } => {
                println!("killed pid={} name={} trap={} rip={rip:#x}", p.pid, p.name(), mnemonic(u64::from(vector)));
                stats::update(|page| {
                    page.kills += 1;
                    stats::event(page, now, ev::EV_FAULT, p.pid, u32::from(vector));
                });
            }
        }
        print_acct(p);
        slot
    };
    // SAFETY: caller's contract; a zombie is never scheduled again.
    unsafe { switch_to_scheduler(slot, OUT_END) };
    unreachable!("a zombie was resumed");
}
