//! Physical page frames: a bump allocator over never-used RAM and a free list of returned
//! frames. Every frame is zero when handed out, so no process sees another's data and no page
//! table is built from stale bytes: returned frames are zeroed when reused, never-used ones too
//! unless the loader promised zeroed RAM (`lde.zeroed_ram=1`, which lde passes: on PVM hosts
//! zeroing a page costs ~0.4 ms of emulated `rep stosq`).

use lde_abi::boot::{MemmapEntry, MEMMAP_RAM};

use crate::arch::mem::zero_page;

const PAGE: u64 = 4096;
/// Frames must be identity-mapped: below the MMIO hole.
const FRAMES_END: u64 = 0xc000_0000;

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
    pub fn alloc_zeroed(&mut self) -> Option<u64> {
        for range in &mut self.fresh {
            if range.0 < range.1 {
                let frame = range.0;
                range.0 += PAGE;
                self.in_use += 1;
                if self.zero_fresh {
                    // SAFETY: a never-used, identity-mapped RAM frame that now belongs to the caller.
                    unsafe { zero_page(frame) };
                }
                return Some(frame);
            }
        }
        if self.free_head == 0 {
            return None;
        }
        let frame = self.free_head;
        // SAFETY: free frames are identity-mapped pages owned by the allocator; their first
        // qword links the list.
        unsafe {
            self.free_head = (frame as *const u64).read();
            zero_page(frame);
        }
        self.free_count -= 1;
        self.in_use += 1;
        Some(frame)
    }

    /// Returns a frame. It must not be used afterwards.
    pub fn free(&mut self, frame: u64) {
        // SAFETY: the caller hands the (identity-mapped) page over; its first qword links it.
        unsafe { (frame as *mut u64).write(self.free_head) };
        self.free_head = frame;
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
