//! The application processors' two interrupt stubs (their IDT, `idt::init_ap`, has no other
//! interrupt gate), outside the common trap path: no `TrapFrame`, no `trap_dispatch`, no lock,
//! nothing of `Global`. Vector [`IPI_VECTOR`] leads to `ipi_pong`, the answer of the IPI
//! round-trip measurement: it counts the IPI in `IPI_PONGS`, ends it with an EOI and returns.
//! The spurious vector leads to a bare `iretq`. Only processor 1 is ever sent an IPI (by
//! processor 0, at boot, `ipi_roundtrip.rs`), so one counter is the whole shared state.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::lapic::LAPIC_ADDR;
pub use super::vectors::IPI_VECTOR;

/// IPIs on [`IPI_VECTOR`] the application processor has answered.
#[no_mangle]
static IPI_PONGS: AtomicU64 = AtomicU64::new(0);

/// The LAPIC's EOI register.
const LAPIC_EOI_ADDR: u64 = LAPIC_ADDR + 0xb0;

// `ipi_pong` contract: entered through an interrupt gate (IF=0) in ring 0 on the application
// processor's idle stack, with the CPU's frame only (no error code). Touches RAX and RFLAGS,
// both restored (RAX by push/pop, RFLAGS by `iretq`); runs no string instruction and no Rust,
// so the entry contract's DF/AC clauses do not arise. The `lock incq` publishes the answer
// before the EOI lets another IPI in.
//
// `ipi_spurious` contract: the application processors' spurious-vector gate; the LAPIC wants no
// EOI for it, so it only returns.
global_asm!(
    r#"
    .text
    .p2align 4
    .global ipi_pong
ipi_pong:
    lock incq IPI_PONGS(%rip)
    pushq %rax
    movabsq ${eoi}, %rax
    movl $0, (%rax)
    popq %rax
    iretq

    .p2align 4
    .global ipi_spurious
ipi_spurious:
    iretq
    "#,
    eoi = const LAPIC_EOI_ADDR,
    options(att_syntax)
);

extern "C" {
    fn ipi_pong();
    fn ipi_spurious();
}

/// The address of the IPI answer stub (for its IDT gate).
pub fn pong_address() -> u64 {
    ipi_pong as *const () as u64
}

/// The address of the application processors' spurious-interrupt stub.
pub fn spurious_address() -> u64 {
    ipi_spurious as *const () as u64
}

/// IPIs answered so far.
pub fn pongs() -> u64 {
    IPI_PONGS.load(Ordering::Acquire)
}
