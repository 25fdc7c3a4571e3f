//! Starting a program: find it in the initrd, check its ELF, build a fresh address space with
//! its segments and stack (argv, envp, auxv), and a kernel stack whose first switch "returns"
//! into ring 3 at its entry point (xv6's `allocproc` + `forkret`).

use core::sync::atomic::Ordering;

use lde_abi::stats::EV_SPAWN;
use lde_abi::user::{AT_LDE_TSC_HZ, USER_BASE, USER_STACK_SIZE, USER_STACK_TOP};
use lde_kcore::args::{build_start_frame, Spec, FRAME_PAGE_SIZE};
use lde_kcore::cpio;
use lde_kcore::elf::{self, ElfError, MAX_SEGMENTS};

use crate::arch::cpu::{rdtsc, SegmentBases};
use crate::arch::entry::TrapFrame;
use crate::arch::fpu::FxArea;
use crate::arch::gdt::{USER_CODE_SELECTOR, USER_DATA_SELECTOR};
use crate::arch::paging::{AddressSpace, OutOfMemory, PageFlags};
use crate::arch::switch::new_process_stack;
use crate::arch::{mem, percpu};
use crate::counters::{self, publish};
use crate::mm::Frames;
use crate::process::{DemandZero, Kernel, DEMAND_ZERO_REGIONS};
use crate::stacks::{kstack_top, saved_rsp};
use crate::{println, time};

const PAGE: u64 = 4096;
/// RFLAGS of a new process: IF set, IOPL 0 (PVM faults on any other IOPL).
const USER_RFLAGS: u64 = 0x202;

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

/// Starts the next programs of the command line while the process table has room. A program
/// that cannot start gets one line, `failed name=… reason=…`, and counts as failed.
pub fn spawn_pending(k: &mut Kernel) {
    while !k.procs.all_live() {
        let Some(value) = crate::config::next_run(&mut k.programs.runs) else { return };
        match Spec::decode(value) {
            Ok(spec) => {
                if let Err(e) = spawn(k, &spec, 0) {
                    k.failures.spawns += 1;
                    crate::console::start_line();
                    println!("failed name={} reason={e}", spec.name());
                }
            }
            Err(e) => {
                k.failures.spawns += 1;
                crate::console::start_line();
                println!("failed name=? reason=bad program spec: {e}");
            }
        }
    }
}

/// Starts the program `spec` names; `parent` is the spawning pid (0 = the kernel). Returns the
/// new process's pid.
pub fn spawn(k: &mut Kernel, spec: &Spec, parent: u32) -> Result<u32, SpawnError> {
    let name = spec.name();
    let file = cpio::find(k.programs.initrd, name).ok_or(SpawnError::NotFound)?;
    let image = elf::parse(file).map_err(SpawnError::Elf)?;
    let slot = k.procs.alloc(name, parent).ok_or(SpawnError::TooManyProcesses)?;
    let mut space = match AddressSpace::new(&mut k.frames) {
        Ok(space) => space,
        Err(e) => {
            k.procs.reap(slot);
            return Err(e.into());
        }
    };
    let mut demand_zero = [None; DEMAND_ZERO_REGIONS];
    match load(&mut k.frames, &mut space, &image, file, spec, &mut demand_zero) {
        Ok(user_rsp) => {
            let top = kstack_top(slot);
            // SAFETY: `alloc` just gave out the slot: no process runs on its kernel stack.
            let rsp = unsafe { prepare_kernel_stack(top, image.entry, user_rsp) };
            saved_rsp(slot).store(rsp, Ordering::Relaxed);
            let p = k.procs.get_mut(slot);
            p.machine.space = Some(space);
            p.machine.fx = FxArea::INITIAL;
            p.machine.bases = SegmentBases::default();
            p.machine.demand_zero = demand_zero;
            p.slice_left = time::slice();
            k.procs.make_ready(slot);
            crate::resched::kick_idle();
            let pid = k.procs.get(slot).pid;
            let in_use = k.frames.in_use();
            k.stats.update(|page| {
                page.spawned += 1;
                page.frames_in_use = in_use;
                publish(page, slot, k.procs.get(slot));
                counters::event(page, rdtsc(), EV_SPAWN, pid, parent);
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

/// Copies the segments and builds the stack; returns the initial user RSP. The pages of each
/// segment that hold no file bytes are left to `demand_zero` instead of being mapped.
fn load(
    frames: &mut Frames,
    space: &mut AddressSpace,
    image: &elf::UserImage,
    file: &[u8],
    spec: &Spec,
    demand_zero: &mut [Option<DemandZero>; DEMAND_ZERO_REGIONS],
) -> Result<u64, SpawnError> {
    for (seg, lazy) in image.segments().iter().zip(demand_zero.iter_mut()) {
        let flags = PageFlags { writable: seg.writable, executable: seg.executable };
        let file_end = seg.vaddr + seg.file_size;
        let zero_from = file_end.div_ceil(PAGE) * PAGE;
        let eager_end = zero_from.clamp(seg.page_start(), seg.page_end());
        if eager_end < seg.page_end() {
            *lazy = Some(DemandZero { start: eager_end, end: seg.page_end(), flags });
        }
        let mut page = seg.page_start();
        while page < eager_end {
            let frame = frames.alloc_zeroed().ok_or(OutOfMemory)?;
            // The part of [vaddr, file_end) that falls in this page comes from the file.
            let from = page.max(seg.vaddr);
            let to = (page + PAGE).min(file_end);
            if from < to {
                let src = &file[(seg.file_offset + (from - seg.vaddr)) as usize..][..(to - from) as usize];
                // SAFETY: `frame` owns its identity-mapped page; [from, to) lies in [page,
                // page + PAGE), so the copy stays inside it.
                unsafe { mem::copy((frame.addr() + (from - page)) as *mut u8, src.as_ptr(), src.len()) };
            }
            // On failure `map` frees the frame: the address space, destroyed by the caller,
            // holds everything else this function allocated.
            space.map(frames, page, frame, flags)?;
            page += PAGE;
        }
    }
    // The stack's top page holds the start frame; the rest is mapped as it is touched.
    let stack_flags = PageFlags { writable: true, executable: false };
    let top_frame = frames.alloc_zeroed().ok_or(OutOfMemory)?;
    let top_addr = top_frame.addr();
    space.map(frames, USER_STACK_TOP - PAGE, top_frame, stack_flags)?;
    demand_zero[MAX_SEGMENTS] =
        Some(DemandZero { start: USER_STACK_TOP - USER_STACK_SIZE, end: USER_STACK_TOP - PAGE, flags: stack_flags });
    // SAFETY: the stack's top page, identity-mapped and owned by `space`, which only this
    // function can reach until the process is made ready: this is the one reference to it.
    let top_page = unsafe { &mut *(top_addr as *mut [u8; FRAME_PAGE_SIZE]) };
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

/// An address space holding only `code` at the bottom of user space, in one read-only,
/// executable page: what the kernel's own ring-3 excursions run (the doors self-test, the SMEP
/// test hook).
pub fn code_page(k: &mut Kernel, code: &[u8]) -> Result<AddressSpace, OutOfMemory> {
    debug_assert!(code.len() <= PAGE as usize);
    let frame = k.frames.alloc_zeroed().ok_or(OutOfMemory)?;
    // SAFETY: `frame` owns its identity-mapped page; `code` fits in it.
    unsafe { mem::copy(frame.addr() as *mut u8, code.as_ptr(), code.len()) };
    let mut space = match AddressSpace::new(&mut k.frames) {
        Ok(space) => space,
        Err(e) => {
            k.frames.free(frame);
            return Err(e);
        }
    };
    // On failure `map` has freed the frame.
    match space.map(&mut k.frames, USER_BASE, frame, PageFlags { writable: false, executable: true }) {
        Ok(()) => Ok(space),
        Err(e) => {
            space.destroy(&mut k.frames);
            Err(e)
        }
    }
}

/// Maps a zeroed frame at the page holding `addr` if it lies in one of the running process's
/// demand-zero regions and is not mapped yet (the #PF that brought us here said "not
/// present"). False if it does not, or if no frame is left (the process is then killed with
/// its #PF).
pub fn demand_zero(k: &mut Kernel, addr: u64) -> bool {
    let Some(slot) = percpu::current() else { return false };
    let machine = &mut k.procs.get_mut(slot).machine;
    let Some(region) = machine.demand_zero.iter().flatten().find(|r| (r.start..r.end).contains(&addr)) else {
        return false;
    };
    let (Some(space), page) = (machine.space.as_mut(), addr & !(PAGE - 1)) else { return false };
    if space.translate(page).is_some() {
        return false;
    }
    let Some(frame) = k.frames.alloc_zeroed() else { return false };
    // On failure `map` has freed the frame.
    space.map(&mut k.frames, page, frame, region.flags).is_ok()
}
