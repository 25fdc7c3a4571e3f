//! Bulk memory operations with an explicit cost: `rep stosq`/`rep movsq` move 8 bytes per
//! iteration, which matters where ring 0 is emulated (PVM: ~0.8 µs per iteration).

use core::arch::asm;

/// Zeroes the 4 KiB page at (identity-mapped) physical address `phys`.
///
/// # Safety
/// `phys` must be a page-aligned, identity-mapped page that nothing else uses.
pub unsafe fn zero_page(phys: u64) {
    // SAFETY: rep stosq writes 512 qwords from rdi, inside the page the caller owns.
    unsafe {
        asm!("rep stosq", inout("rdi") phys => _, inout("rcx") 512u64 => _, in("rax") 0u64,
             options(nostack, preserves_flags));
    }
}

/// Copies `len` bytes from `src` to `dst` (qwords, then the tail bytewise).
///
/// # Safety
/// Both ranges must be valid for `len` bytes and must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller guarantees both ranges; rep movs moves forwards (DF is clear in the
    // kernel: every entry sets RFLAGS to KERNEL_RFLAGS, see entry.rs; tests/attack.rs checks).
    unsafe {
        asm!("rep movsq", "mov ecx, {tail:e}", "rep movsb",
             tail = in(reg) (len % 8) as u32,
             inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") len / 8 => _,
             options(nostack, preserves_flags));
    }
}

/// Bytes in a page frame.
pub const FRAME_SIZE: u64 = 4096;

/// A 4 KiB page of identity-mapped RAM that its holder owns: no other `Frame` names it and no
/// other code uses it. Only the frame allocator (`mm.rs`) makes one from nothing; everything
/// else gets one from it, and giving one back (`Frames::free`) needs one, so a safe caller
/// cannot free memory it does not own (an address, such as 0, is not a `Frame`).
#[must_use = "a frame that is dropped is never freed"]
pub struct Frame(u64);

impl Frame {
    /// Takes over the page at `addr`.
    ///
    /// # Safety
    /// `addr` is a page-aligned, identity-mapped RAM page that nothing else uses or will use
    /// (its previous owner, such as a page-table entry or the free list, gives it up).
    #[inline(always)]
    pub unsafe fn from_addr(addr: u64) -> Frame {
        debug_assert!(addr != 0 && addr.is_multiple_of(FRAME_SIZE), "not a frame: {addr:#x}");
        Frame(addr)
    }

    /// Its (identity-mapped) physical address.
    #[inline(always)]
    pub fn addr(&self) -> u64 {
        self.0
    }

    /// Gives up ownership and returns the address, for a new owner that keeps only the address
    /// (a page-table entry, the free list) and makes a `Frame` of it again with
    /// [`Frame::from_addr`] when it lets go.
    #[inline(always)]
    pub fn into_addr(self) -> u64 {
        self.0
    }

    /// Zeroes the page.
    #[inline(always)]
    pub fn zero(&mut self) {
        // SAFETY: the page is identity-mapped and ours alone (the type's invariant).
        unsafe { zero_page(self.0) }
    }
}
