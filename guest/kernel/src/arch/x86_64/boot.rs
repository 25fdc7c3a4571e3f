//! The PVH entry: 32-bit protected mode → long mode → `kernel_main`.
//!
//! The boot page tables are data, written out by the assembler, so that the (on PVM hosts,
//! emulated and slow) boot path does not spend thousands of ring-0 instructions building them.
//! They stay the kernel's half of every address space:
//!
//! * `0x0000_0000 – 0x0020_0000`: 4 KiB pages, supervisor read/write/execute (the kernel image
//!   lives at 1 MiB). Page 0 is unmapped by [`unmap_page0`] once the boot data (which QEMU puts
//!   in low memory) has been copied, so that null pointers fault.
//! * `0x0020_0000 – 0xC000_0000`: 2 MiB pages, supervisor read/write, no-execute (guest RAM).
//! * `0xC000_0000 – 0x1_0000_0000`: 2 MiB pages, supervisor, uncached, no-execute (MMIO: LAPIC).
//!
//! Everything is supervisor-only: ring 3 can touch none of it. [`protect_kernel`] then makes
//! the kernel image W^X (text read-only and executable, rodata read-only, data, BSS and stacks
//! no-execute) and unmaps the guard page below every kernel stack.

use core::arch::global_asm;

use super::paging::{NO_EXECUTE, PRESENT, WRITABLE};

// Register contract at `pvh_start` (PVH spec): 32-bit protected mode, paging off, flat CS/DS,
// EBX = physical address of `hvm_start_info`, interrupts off, no usable stack.
// At the call to `kernel_main`: 64-bit mode, EDI = the start info address (its upper half is
// zeroed by the 32-bit move), RSP = top of `BOOT_STACK`, 16-byte aligned before the call.
global_asm!(
    r#"
    .section .note.Xen, "a"
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz */
    .long {pvh_note}            /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start
    .p2align 2

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    movl %ebx, %edi
    movl $boot_stack_top, %esp
    /* CR4: PAE (bit 5), OSFXSR (bit 9), OSXMMEXCPT (bit 10): ring 3 may use SSE. */
    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    /* EFER: LME (bit 8), NXE (bit 11). */
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    /* CR0: PE (bit 0), WP (bit 16), PG (bit 31). */
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    lgdt boot_gdt_descriptor
    ljmp ${kernel_cs}, $long_mode_start

    .code64
long_mode_start:
    movw ${kernel_ds}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    call kernel_main
    ud2

    .section .rodata
    .p2align 3
boot_gdt:
    .quad 0                     /* 0x00: null */
    .quad 0                     /* 0x08: unused (Linux layout) */
    .quad 0x00af9b000000ffff    /* 0x10: kernel code, 64-bit */
    .quad 0x00cf93000000ffff    /* 0x18: kernel data */
boot_gdt_end:
boot_gdt_descriptor:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .data.pagetables, "aw"
    .p2align 12
    .global boot_pml4
    .global boot_pt0
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd0 + 0x3
    .quad boot_pd1 + 0x3
    .quad boot_pd2 + 0x3
    .quad boot_pd3 + 0x3
    .fill 508, 8, 0
boot_pd0:
    .quad boot_pt0 + 0x3
    .set i, 1
    .rept 511
    .quad (i << 21) | 0x83 | (1 << 63)
    .set i, i + 1
    .endr
boot_pd1:
    .set i, 512
    .rept 512
    .quad (i << 21) | 0x83 | (1 << 63)
    .set i, i + 1
    .endr
boot_pd2:
    .set i, 1024
    .rept 512
    .quad (i << 21) | 0x83 | (1 << 63)
    .set i, i + 1
    .endr
boot_pd3:
    .set i, 1536
    .rept 512
    .quad (i << 21) | 0x9b | (1 << 63)
    .set i, i + 1
    .endr
boot_pt0:
    .quad 0x3 | (1 << 63)       /* page 0: mapped until boot data is copied, see unmap_page0 */
    .set i, 1
    .rept 511
    /* Below the kernel (1 MiB): boot data, no-execute. The first {exec_pages} pages of the
     * kernel (its text, and what follows it there) are executable until protect_kernel gives
     * them their final flags; the rest is already as it stays: read/write, no-execute. */
    .if i < 256 || i >= 256 + {exec_pages}
    .quad (i << 12) | 0x3 | (1 << 63)
    .else
    .quad (i << 12) | 0x3
    .endif
    .set i, i + 1
    .endr

    .section .bss.boot_stack, "aw", @nobits
    .p2align 12
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096                  /* unmapped by protect_kernel: an overflow faults */
boot_stack:
    .skip {boot_stack_size}
    .global boot_stack_top
boot_stack_top:
    .text
    "#,
    pvh_note = const lde_abi::boot::PVH_ENTRY_NOTE_TYPE,
    kernel_cs = const super::gdt::KERNEL_CODE_SELECTOR,
    kernel_ds = const super::gdt::KERNEL_DATA_SELECTOR,
    boot_stack_size = const BOOT_STACK_SIZE,
    exec_pages = const BOOT_EXEC_PAGES,
    options(att_syntax)
);

/// Pages from 1 MiB that the boot page tables map executable: room for the kernel's text
/// (linker.ld fails the link if the text outgrows it), so that [`protect_kernel`] need not
/// visit the other ~230 pages of the kernel image.
pub const BOOT_EXEC_PAGES: usize = 32;

/// Size of the boot stack, which stays the stack of `kernel_main` and the scheduler.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

extern "C" {
    /// The page table of the first 2 MiB (defined above in asm).
    static mut boot_pt0: [u64; 512];
    /// The page below the boot stack (defined above in asm).
    #[link_name = "boot_stack_guard"]
    static BOOT_STACK_GUARD: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
}

const PAGE: u64 = 4096;

/// The guard page below the boot stack (the stack of `kernel_main` and the scheduler).
pub fn boot_stack_guard() -> u64 {
    core::ptr::addr_of!(BOOT_STACK_GUARD) as u64
}

/// Gives the kernel image its final page flags: text read-only and executable, rodata
/// read-only, everything else in the first 2 MiB no-execute; and unmaps each of `guards` (the
/// page below a kernel stack). Every address space shares these page tables.
///
/// # Safety
/// Call once at boot, from kernel text, with no data in the guard pages.
pub unsafe fn protect_kernel(guards: &[u64]) {
    let (text, text_end, rodata_end) = (
        core::ptr::addr_of!(__text_start) as u64,
        core::ptr::addr_of!(__text_end) as u64,
        core::ptr::addr_of!(__rodata_end) as u64,
    );
    let pt = core::ptr::addr_of_mut!(boot_pt0) as *mut u64;
    // Pages past these two ranges are read/write and no-execute from the boot tables on.
    let last = text + PAGE * BOOT_EXEC_PAGES.max(((rodata_end - text) / PAGE) as usize) as u64;
    // Three runs of one flag each (one test a page cost ~8 more emulated instructions a page).
    let runs = [(text, text_end, 0), (text_end, rodata_end, NO_EXECUTE), (rodata_end, last, NO_EXECUTE | WRITABLE)];
    for (start, end, flags) in runs {
        let mut addr = start; // page-aligned: linker.ld starts each range on a page
        while addr < end {
            // SAFETY: entry addr/4096 (< 512: the kernel image lies in the first 2 MiB) of the
            // live first-2-MiB table; the new flags keep the page mapped (text stays
            // executable, the code running now included) and only take rights away.
            unsafe { pt.add((addr / PAGE) as usize).write(addr | PRESENT | flags) };
            addr += PAGE;
        }
    }
    for &guard in guards {
        debug_assert!(guard >= rodata_end && guard < 0x20_0000 && guard % PAGE == 0);
        // SAFETY: as above; the caller promises nothing lives in a guard page.
        unsafe { pt.add((guard / PAGE) as usize).write(0) };
    }
    x86_64::instructions::tlb::flush_all();
}

/// Unmaps `pages`, each a page of the first 2 MiB (the guard pages of stacks that boot did not
/// know of), so that an overflow into one faults.
///
/// # Safety
/// Nothing may live in `pages`, and none may belong to the kernel image.
pub unsafe fn unmap_pages(pages: &[u64]) {
    let pt = core::ptr::addr_of_mut!(boot_pt0) as *mut u64;
    for &page in pages {
        assert!(page != 0 && page < 0x20_0000 && page % PAGE == 0, "a page of the first 2 MiB");
        // SAFETY: entry page/4096 (< 512, checked above) of the live first-2-MiB table; the
        // caller promises the page holds nothing; its TLB entry is flushed right after.
        unsafe { pt.add((page / PAGE) as usize).write_volatile(0) };
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(page));
    }
}

/// Test hook: writes to the kernel's own text, which must fault (#PF, error 0x3).
pub fn write_text() {
    // SAFETY: deliberately faults: text is read-only once protect_kernel ran.
    unsafe { core::ptr::write_volatile(protect_kernel as *const () as *mut u8, 0xc3) };
}

/// A `ret` instruction kept in writable data: [`execute_data`] calls it.
static DATA_RET: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0xc3);

/// Test hook: calls into kernel data, which must fault (#PF, error 0x11).
pub fn execute_data() {
    // SAFETY: deliberately faults: data is no-execute once protect_kernel ran (were it not,
    // the byte is a `ret` and the call returns).
    let f: extern "C" fn() = unsafe { core::mem::transmute(DATA_RET.as_ptr()) };
    f();
}

/// Unmaps page 0 so that null-pointer accesses fault.
///
/// # Safety
/// Nothing may still refer to memory in page 0.
pub unsafe fn unmap_page0() {
    // SAFETY: boot_pt0 is the live page table of the first 2 MiB; clearing entry 0 only removes
    // page 0, which the caller promises is unused, and the TLB entry is flushed right after.
    unsafe {
        core::ptr::addr_of_mut!(boot_pt0[0]).write_volatile(0);
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::zero());
    }
}
