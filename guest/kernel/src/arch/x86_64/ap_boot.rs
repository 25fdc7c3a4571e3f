//! How an application processor gets from the startup IPI to `ap_main`: real mode → 32-bit
//! protected mode → long mode on the kernel's page tables and a stack of its own.
//!
//! A SIPI starts a processor in real mode at `vector << 12`, below 1 MiB, so the first part (the
//! trampoline, position-independent real-mode code and a GDT) is copied to
//! [`TRAMPOLINE_ADDR`]. It enters protected mode and jumps into kernel text (`ap_start32`,
//! identity-mapped), which turns on paging and long mode with the registers the bootstrap
//! processor left in [`ApRegisters`] (its CR0, CR3, CR4 and EFER), as `pvh_start` does for the
//! bootstrap processor. In 64-bit mode it reads its own LAPIC id and takes the stack the
//! bootstrap processor set for that id ([`set_stack`]): a processor that starts late (after the
//! bootstrap processor gave up on it) still runs on its own stack. It then calls `ap_main(apic
//! id)` (smp.rs).
//!
//! The trampoline's page is no-execute in the kernel's page tables, so nothing runs there once
//! paging is on: the jump into kernel text comes first.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::gdt::{KERNEL_CODE_SELECTOR, KERNEL_DATA_SELECTOR};
use super::lapic::LAPIC_ADDR;

/// Where the trampoline is copied: the page after the PVH memory map (lde's boot data ends at
/// 0x8000, vmm/src/layout.rs) and far below the command line (0x2_0000), the MP table
/// (0x9_fc00) and every frame the kernel allocates (above its own image, at 1 MiB). The boot
/// data has been copied before the trampoline is written.
pub const TRAMPOLINE_ADDR: u64 = 0x8000;

/// The SIPI vector that starts a processor at [`TRAMPOLINE_ADDR`].
pub const TRAMPOLINE_VECTOR: u8 = (TRAMPOLINE_ADDR >> 12) as u8;

const _: () = assert!(TRAMPOLINE_ADDR.is_multiple_of(4096) && TRAMPOLINE_ADDR < 0x10_0000);
const _: () = assert!(TRAMPOLINE_ADDR + 4096 <= lde_kcore::mptable::MP_FLOATING_ADDR);

/// The trampoline's 32-bit code selector (its own GDT; the 64-bit code and data selectors are
/// the kernel's).
const TRAMPOLINE_CODE32_SELECTOR: u16 = 0x08;

/// The bootstrap processor's control registers, for the application processors to load
/// (`ap_start32` reads the low halves: all four fit in 32 bits).
#[repr(C)]
pub struct ApRegisters {
    cr0: AtomicU64,
    cr3: AtomicU64,
    cr4: AtomicU64,
    efer: AtomicU64,
}

static AP_REGISTERS: ApRegisters =
    ApRegisters { cr0: AtomicU64::new(0), cr3: AtomicU64::new(0), cr4: AtomicU64::new(0), efer: AtomicU64::new(0) };

/// The stack top of each LAPIC id (0: none, the processor halts).
static STACK_TOPS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

// Register contract at `ap_trampoline_start` (SIPI): real mode, CS = TRAMPOLINE_ADDR >> 4,
// IP = 0, interrupts off, no stack, CR0 as after INIT (caching off).
// At `ap_start32`: 32-bit protected mode, paging off, CS = 0x08 of the trampoline GDT.
// At the call to `ap_main`: 64-bit mode, EDI = this processor's LAPIC id, RSP = the top of the
// stack the bootstrap processor set for that id (16-byte aligned before the call), DF clear.
global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .code16
    .global ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl {base} + (ap_gdt_descriptor - ap_trampoline_start)
    /* CR0: PE only (clears the caching-off bits INIT left). */
    movl $1, %eax
    movl %eax, %cr0
    ljmpl ${code32}, $ap_start32
    .p2align 3
ap_gdt:
    .quad 0                     /* 0x00: null */
    .quad 0x00cf9b000000ffff    /* 0x08: 32-bit code */
    .quad 0x00af9b000000ffff    /* 0x10: kernel code, 64-bit */
    .quad 0x00cf93000000ffff    /* 0x18: kernel data */
ap_gdt_end:
ap_gdt_descriptor:
    .word ap_gdt_end - ap_gdt - 1
    .long {base} + (ap_gdt - ap_trampoline_start)
ap_trampoline_end:

    .text
    .code32
ap_start32:
    movw ${kernel_ds}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl {regs} + 16, %eax      /* CR4 */
    movl %eax, %cr4
    movl {regs} + 8, %eax       /* CR3 */
    movl %eax, %cr3
    movl $0xC0000080, %ecx      /* EFER */
    movl {regs} + 24, %eax
    xorl %edx, %edx
    wrmsr
    movl {regs}, %eax           /* CR0: paging on, and with EFER.LME long mode */
    movl %eax, %cr0
    ljmp ${kernel_cs}, $ap_start64

    .code64
ap_start64:
    cld
    movw ${kernel_ds}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl ${lapic_id_reg}, %ecx
    movl (%rcx), %edi
    shrl $24, %edi
    leaq {stack_tops}(%rip), %rcx
    movq (%rcx,%rdi,8), %rsp
    testq %rsp, %rsp
    jz 2f
    xorl %ebp, %ebp
    call ap_main
2:
    cli
    hlt
    jmp 2b
    "#,
    base = const TRAMPOLINE_ADDR,
    code32 = const TRAMPOLINE_CODE32_SELECTOR,
    kernel_cs = const KERNEL_CODE_SELECTOR,
    kernel_ds = const KERNEL_DATA_SELECTOR,
    lapic_id_reg = const LAPIC_ADDR + 0x20,
    regs = sym AP_REGISTERS,
    stack_tops = sym STACK_TOPS,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// Copies the trampoline to [`TRAMPOLINE_ADDR`] and records this processor's control
/// registers for the others to load.
///
/// # Safety
/// Nothing else may live at [`TRAMPOLINE_ADDR`] (see there), and no processor may be running
/// the trampoline.
pub unsafe fn install() {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
    debug_assert!(len <= 4096);
    // SAFETY: the trampoline is `len` bytes of kernel rodata; its page is identity-mapped
    // writable low RAM that nothing else uses (the caller's contract).
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len) };
    let efer = x86_64::registers::model_specific::Efer::read_raw();
    let cr4 = x86_64::registers::control::Cr4::read_raw();
    // EFER.LMA (bit 10) is the processor's to set; CR4.PCIDE (bit 17) cannot be set before
    // long mode (the kernel does not use it).
    AP_REGISTERS.efer.store(efer & !(1 << 10), Ordering::Relaxed);
    AP_REGISTERS.cr4.store(cr4 & !(1 << 17), Ordering::Relaxed);
    AP_REGISTERS.cr3.store(x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64(), Ordering::Relaxed);
    AP_REGISTERS.cr0.store(x86_64::registers::control::Cr0::read_raw(), Ordering::Release);
}

/// Sets the stack the processor with LAPIC id `apic_id` starts `ap_main` on.
pub fn set_stack(apic_id: u8, top: u64) {
    STACK_TOPS[usize::from(apic_id)].store(top, Ordering::Release);
}
