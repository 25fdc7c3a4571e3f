//! TLB shootdown. With several processors, an idle processor keeps the page tables of the last
//! process it ran (resched.rs), and with them that process's translations in its TLB. Before
//! the kernel frees an address space, every other processor that still has it loaded must let
//! go of it: the processor that frees it sends each of them an IPI on `SHOOTDOWN_VECTOR` and
//! waits for the answer; the target loads the kernel's page tables (a CR3 write flushes its TLB)
//! and answers. Only then is a frame of it freed: a processor could otherwise walk page tables
//! that were given to someone else, or, were the same page be its next process's page tables,
//! skip the CR3 write (`paging::load_cr3` writes only a change) and use the dead process's
//! translations.
//!
//! The same request can ask for one page instead (`invlpg`): the boot times that against
//! processor 1 for `lde bench --cpus 2` (the `tlb-shootdown` row), as Linux's `flush_tlb_page`
//! would send it.
//!
//! The sender holds the big kernel lock and waits; a target answers from the IPI's handler
//! (`trap_dispatch_smp`, before it would take the lock) or, if it is spinning for the lock with
//! interrupts off, from the lock's wait loop: either way it never needs the lock to answer.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lde_kcore::mptable::MAX_CPUS;

use crate::arch::cpu::rdtsc;
use crate::arch::vectors::SHOOTDOWN_VECTOR;
use crate::arch::{lapic, paging, percpu};

/// What each processor is asked to drop: 0 for nothing, a page-table root (page-aligned) to stop
/// using, or a page address with [`ONE_PAGE`] set to `invlpg`.
static REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Requests each processor answered.
static ANSWERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Requests sent.
static SENT: AtomicU64 = AtomicU64::new(0);

/// The request bit of a one-page invalidation.
const ONE_PAGE: u64 = 1;

/// How long a sender waits for an answer before it calls the kernel broken (a processor takes
/// the IPI within microseconds, or polls while it spins for the lock).
const ANSWER_TIMEOUT_MS: u64 = 1000;

/// Set by the test hook that leaves shootdowns out (`lde.test=no-shootdown`), to show that
/// `tlbstale` catches their absence.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Leaves out every shootdown from now on (a test hook).
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

/// Makes every other processor that has the page tables at `root` loaded drop them, and waits
/// until each has. Called with the big kernel lock held, before the address space is freed;
/// with one processor nothing is asked.
pub fn release(root: u64) {
    if DISABLED.load(Ordering::Relaxed) {
        return;
    }
    let me = percpu::index();
    let mut asked = 0u32;
    for cpu in (0..MAX_CPUS).filter(|&c| c != me && percpu::cr3_of(c) == root) {
        ask(cpu, root);
        asked |= 1 << cpu;
    }
    for cpu in (0..MAX_CPUS).filter(|c| asked & (1 << c) != 0) {
        if !wait_for(cpu) {
            panic!("cpu {cpu} did not answer a TLB shootdown within {ANSWER_TIMEOUT_MS} ms");
        }
    }
}

/// Asks processor `cpu` to `invlpg` the page at `page` and waits for its answer: the TSC cycles
/// from the request to the answer seen, or `None` if none came in time (the boot's measurement,
/// processor 0 to 1, before either runs processes).
pub fn one_page(cpu: usize, page: u64) -> Option<u64> {
    let start = rdtsc();
    ask(cpu, (page & !0xfff) | ONE_PAGE);
    wait_for(cpu).then(|| rdtsc().saturating_sub(start))
}

fn ask(cpu: usize, request: u64) {
    REQUEST[cpu].store(request, Ordering::Release);
    SENT.fetch_add(1, Ordering::Relaxed);
    lapic::send_to(cpu, SHOOTDOWN_VECTOR);
}

/// Waits for processor `cpu` to answer its request; whether it did in time.
fn wait_for(cpu: usize) -> bool {
    let deadline = rdtsc() + crate::time::ms_to_tsc(ANSWER_TIMEOUT_MS);
    while REQUEST[cpu].load(Ordering::Acquire) != 0 {
        if rdtsc() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Carries out this processor's request, if one waits: drops the page tables it names (loads
/// the kernel's), or invalidates the one page; then answers. Lock-free: called from the IPI's
/// handler and from the lock's wait loop.
#[inline]
pub fn answer() {
    let me = percpu::index();
    let request = REQUEST[me].load(Ordering::Acquire);
    if request == 0 {
        return;
    }
    if request & ONE_PAGE != 0 {
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(request & !0xfff));
    } else if percpu::cr3() == request {
        paging::activate_kernel();
    }
    ANSWERED[me].fetch_add(1, Ordering::Relaxed);
    REQUEST[me].store(0, Ordering::Release);
}

/// The shootdown IPI: answers, then ends the interrupt.
pub fn interrupt() {
    answer();
    lapic::eoi();
}

/// Requests sent since boot.
pub fn sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Requests processor `cpu` answered.
pub fn answered(cpu: usize) -> u64 {
    ANSWERED[cpu].load(Ordering::Relaxed)
}
