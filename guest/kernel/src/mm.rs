//! Physical page frames: a bump allocator over never-used RAM and a free list of returned
//! frames. Every frame is zero when handed out, so no process sees another's data and no page
//! table is built from stale bytes: returned frames are zeroed when reused, never-used ones too
//! unless the loader promised zeroed RAM (`lde.zeroed_ram=1`, which lde passes: on PVM hosts
//! zeroing a page costs ~0.4 ms of emulated `rep stosq`).

use lde_abi::boot::{MemmapEntry, MEMMAP_RAM};

use crate::arch::mem::{Frame, FRAME_SIZE as PAGE};
use crate::arch::paging::FrameAlloc;

/// Frames must be identity-mapped: below the MMIO hole.
const FRAMES_END: u64 = lde_kcore::memmap::IDENTITY_MAPPED_END;

/// The frame allocator.
pub struct Frames {
    /// Never-used ranges `[next, end)`.
    fresh: [(u64, u64); 2],
    /// First frame of the free list (0 = empty); each free frame holds the next one's address.
    free_head: u64,
    free_count: u64,
    in_use: u64,
    /// Whether never-used frames must be zeroed (the loader did not promise zeroed RAM).
    zero_fresh: bool,
}

impl Frames {
    pub const fn empty() -> Frames {
        Frames { fresh: [(0, 0); 2], free_head: 0, free_count: 0, in_use: 0, zero_fresh: true }
    }

    /// Takes the RAM range holding `kernel_end`, above it, minus the `reserved` range (the
    /// initrd). `ram_zeroed`: the loader promised that this RAM reads as zero.
    pub fn init(&mut self, memmap: &[MemmapEntry], kernel_end: u64, reserved: (u64, u64), ram_zeroed: bool) {
        self.zero_fresh = !ram_zeroed;
        let start = kernel_end.div_ceil(PAGE) * PAGE;
        let Some(ram) =
            memmap.iter().find(|e| e.kind == MEMMAP_RAM && e.addr <= start && start < e.addr.saturating_add(e.size))
        else {
            return;
        };
        let end = (ram.addr.saturating_add(ram.size) & !(PAGE - 1)).min(FRAMES_END);
        let (res_start, res_end) = (reserved.0 & !(PAGE - 1), reserved.1.div_ceil(PAGE) * PAGE);
        if res_end <= start || res_start >= end || reserved.0 == reserved.1 {
            self.fresh = [(start, end), (0, 0)];
        } else {
            self.fresh = [(start, res_start.max(start)), (res_end.min(end), end)];
        }
    }

    /// A zeroed frame.
    pub fn alloc_zeroed(&mut self) -> Option<Frame> {
        for range in &mut self.fresh {
            if range.0 < range.1 {
                // SAFETY: `init` chose the fresh ranges inside identity-mapped RAM, above the
                // kernel image and apart from the initrd; `range.0` moves past the page, so it
                // is never handed out again except through `free`.
                let mut frame = unsafe { Frame::from_addr(range.0) };
                range.0 += PAGE;
                self.in_use += 1;
                if self.zero_fresh {
                    frame.zero();
                }
                return Some(frame);
            }
        }
        if self.free_head == 0 {
            return None;
        }
        // SAFETY: every page on the free list was given up by the `Frame` that owned it
        // (`free`) and is unlinked here before it is handed out again.
        let mut frame = unsafe { Frame::from_addr(self.free_head) };
        // SAFETY: the page is ours (above); its first qword links the list (`free`).
        self.free_head = unsafe { (frame.addr() as *const u64).read() };
        frame.zero();
        self.free_count -= 1;
        self.in_use += 1;
        Some(frame)
    }

    /// Takes a frame back; its first qword links the free list.
    pub fn free(&mut self, frame: Frame) {
        let addr = frame.into_addr();
        // SAFETY: `frame` owned the identity-mapped page and has been given up.
        unsafe { (addr as *mut u64).write(self.free_head) };
        self.free_head = addr;
        self.free_count += 1;
        self.in_use -= 1;
    }

    /// Frames handed out and not returned.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Frames still available.
    pub fn available(&self) -> u64 {
        self.fresh.iter().map(|(a, b)| (b - a) / PAGE).sum::<u64>() + self.free_count
    }
}

impl FrameAlloc for Frames {
    #[inline(always)]
    fn alloc_zeroed(&mut self) -> Option<Frame> {
        Frames::alloc_zeroed(self)
    }

    #[inline(always)]
    fn free(&mut self, frame: Frame) {
        Frames::free(self, frame)
    }
}
