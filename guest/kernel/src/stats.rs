//! The stats page (`lde_abi::stats`), which the host reads without a VM exit, and the kernel's
//! one way to it, [`Stats`], which lives in the kernel's state (`process::Kernel::stats`): a
//! borrow of that state is the page's too. What the kernel keeps there is `counters.rs`.

use core::cell::UnsafeCell;

use lde_abi::stats::StatsPage;

/// The stats page, exported by name for the host (`lde_abi::stats::STATS_SYMBOL`), which reads
/// it under its sequence counter (`StatsPage::update`). The kernel reaches it only through
/// [`Stats`], which lives in the kernel's state: a borrow of that state is the page's too (a
/// borrow flag of its own cost every system call and tick 5 emulated instructions, and every
/// switch 20).
#[no_mangle]
#[used]
static LDE_STATS: StatsCell = StatsCell(UnsafeCell::new(StatsPage::new()));

#[repr(transparent)]
struct StatsCell(UnsafeCell<StatsPage>);

// SAFETY: the kernel touches the page only through the one `Stats` (below), which lives in
// `KERNEL` and so is used by one processor at a time (`sync::Global`); the host only reads it.
unsafe impl Sync for StatsCell {}

/// The kernel's one way to the stats page: `process::Kernel::stats`, so that whoever holds the
/// kernel's state (`KERNEL.with`) holds the page, and no one else does.
pub struct Stats {
    _only_in_kernel: (),
}

impl Stats {
    /// The one `Stats`.
    ///
    /// # Safety
    /// Called once, for `process::KERNEL`'s initial value: a second `Stats` would lend the page
    /// twice.
    pub const unsafe fn new() -> Stats {
        Stats { _only_in_kernel: () }
    }

    /// Updates the counters inside one seqlock write section.
    #[inline(always)]
    pub fn update<R>(&mut self, f: impl FnOnce(&mut StatsPage) -> R) -> R {
        // SAFETY: `&mut self` is the only `&mut` to the one `Stats` (see `new`), so no other
        // reference to the page exists while this one lives.
        unsafe { &mut *LDE_STATS.0.get() }.update(f)
    }

    /// Reads the page.
    pub fn read<R>(&self, f: impl FnOnce(&StatsPage) -> R) -> R {
        // SAFETY: as for `update`: a `&self` of the one `Stats` excludes every `&mut` to the
        // page while it lives.
        f(unsafe { &*LDE_STATS.0.get() })
    }
}
