//! Each process's x87/SSE state, saved with `fxsave64` and restored with `fxrstor64` when it is
//! switched out and in. The kernel itself never touches these registers (soft-float target).

use core::arch::asm;

/// The 512-byte FXSAVE area.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea([u8; 512]);

impl FxArea {
    /// The state of a freshly reset FPU: FCW 0x37F, MXCSR 0x1F80, everything else zero.
    /// (Built as data: `fninit` is x87, which PVM cannot run in ring 0.)
    pub const INITIAL: FxArea = {
        let mut a = [0u8; 512];
        a[0] = 0x7f; // FCW low
        a[1] = 0x03; // FCW high
        a[24] = 0x80; // MXCSR = 0x1f80
        a[25] = 0x1f;
        a[28] = 0xff; // MXCSR_MASK = 0xffff
        a[29] = 0xff;
        FxArea(a)
    };

    /// Saves the current FPU/SSE state here.
    pub fn save(&mut self) {
        // SAFETY: fxsave64 writes 512 bytes to a 16-byte aligned area, which this is.
        unsafe { asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack, preserves_flags)) };
    }

    /// Loads the FPU/SSE state from here.
    pub fn restore(&self) {
        // SAFETY: fxrstor64 reads 512 bytes from a 16-byte aligned area holding a valid image
        // (INITIAL or one fxsave64 wrote).
        unsafe { asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, preserves_flags)) };
    }
}
