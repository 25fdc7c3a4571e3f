//! Per-process address spaces: a PML4 whose slot 0 is the kernel's (the boot page tables:
//! identity map of the first 4 GiB, supervisor-only) and whose other lower-half slots hold the
//! process's own 4 KiB pages, marked user.

use lde_abi::user::{USER_BASE, USER_END};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::mem::Frame;

/// Page-table entry bits.
pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const ENTRIES: usize = 512;

/// How a user page may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFlags {
    pub writable: bool,
    pub executable: bool,
}

/// The kernel ran out of physical memory.
#[derive(Debug)]
pub struct OutOfMemory;

/// Where an address space's frames come from and go back to: the kernel's frame allocator
/// (`mm::Frames`), which depends on this module and not the other way round.
pub trait FrameAlloc {
    /// A zeroed frame, or `None` when memory ran out.
    fn alloc_zeroed(&mut self) -> Option<Frame>;
    /// Takes a frame back.
    fn free(&mut self, frame: Frame);
}

extern "C" {
    /// The boot PML4 (boot.rs): slot 0 is the kernel's half of every address space.
    static boot_pml4: [u64; ENTRIES];
}

fn table(phys: u64) -> *mut u64 {
    // Physical memory below 4 GiB is identity-mapped.
    phys as *mut u64
}

fn index(vaddr: u64, level: u32) -> usize {
    ((vaddr >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// The kernel's own page tables (used while no process runs).
pub fn kernel_pml4() -> u64 {
    // SAFETY: only the address of the asm symbol is taken.
    unsafe { boot_pml4.as_ptr() as u64 }
}

/// Switches to the kernel's own page tables.
pub fn activate_kernel() {
    load_cr3(kernel_pml4());
}

/// Loads CR3 unless it already holds `pml4` (a write would flush the TLB for nothing), noting it
/// in the processor's per-CPU data, where TLB shootdowns look (`percpu::cr3`, which mirrors CR3
/// from the first load on; a value of 0 there only costs one write).
fn load_cr3(pml4: u64) {
    if super::percpu::cr3() == pml4 {
        return;
    }
    super::percpu::set_cr3(pml4);
    debug_assert!(pml4.is_multiple_of(4096) && pml4 < 1 << 32, "a PML4 is a frame below 4 GiB");
    // SAFETY: every PML4 lde loads is a frame of the allocator or the boot tables' (`Frame` and
    // the linker script: page-aligned, identity-mapped below 4 GiB), which maps the kernel
    // identically in slot 0, so the code and data in use stay mapped across the switch. (The
    // checked `PhysFrame::from_start_address` cost every switch 6 emulated instructions.)
    unsafe {
        let frame = PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(pml4));
        Cr3::write(frame, Cr3Flags::empty());
    }
}

/// Page tables and runs of pages an address space remembers, so that tearing it down visits
/// only what was mapped (scanning every entry of every table costs ~20,000 emulated
/// instructions on PVM). Past these limits it falls back to scanning.
const MAX_TABLES: usize = 16;
const MAX_RUNS: usize = 16;

/// One process's page tables.
pub struct AddressSpace {
    pml4: u64,
    /// The page tables below the PML4 (PDPTs, PDs, PTs), as allocated.
    tables: [u64; MAX_TABLES],
    table_count: usize,
    /// Runs of consecutive mapped pages: (first page, number of pages).
    runs: [(u64, u64); MAX_RUNS],
    run_count: usize,
    /// More tables or runs than the arrays hold: `destroy` scans the tables instead.
    untracked: bool,
    /// The last page table `map` walked to: the 2 MiB region it maps (`vaddr >> 21`;
    /// `u64::MAX`, which no address has, before the first) and its address. Tables are only
    /// freed with the whole space, so it stays valid; a program's pages and its stack's lie in
    /// a few regions, and the walk it saves is ~45 emulated instructions a page.
    leaf_region: u64,
    leaf_table: u64,
}

impl AddressSpace {
    /// A new address space with only the kernel mapped.
    pub fn new(frames: &mut impl FrameAlloc) -> Result<AddressSpace, OutOfMemory> {
        // Owned by the address space from here on, as a bare address (`destroy` frees it).
        let pml4 = frames.alloc_zeroed().ok_or(OutOfMemory)?.into_addr();
        // SAFETY: pml4 is a fresh page; boot_pml4 is the live kernel table (slot 0 is read only).
        unsafe { table(pml4).write(boot_pml4[0]) };
        Ok(AddressSpace {
            pml4,
            tables: [0; MAX_TABLES],
            table_count: 0,
            runs: [(0, 0); MAX_RUNS],
            run_count: 0,
            untracked: false,
            leaf_region: u64::MAX,
            leaf_table: 0,
        })
    }

    /// Its PML4's address (what CR3 holds while it is active).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// Makes this the current address space.
    pub fn activate(&self) {
        load_cr3(self.pml4);
    }

    /// Maps the user page at `vaddr` to `frame`, which the address space then owns (and
    /// `destroy` frees). If a page table for it cannot be had, `frame` is freed and nothing is
    /// mapped: a caller that runs out of memory half-way never leaks the frame it brought.
    pub fn map(
        &mut self,
        frames: &mut impl FrameAlloc,
        vaddr: u64,
        frame: Frame,
        flags: PageFlags,
    ) -> Result<(), OutOfMemory> {
        debug_assert!((USER_BASE..USER_END).contains(&vaddr) && vaddr.is_multiple_of(4096));
        let t = match self.leaf_table(vaddr, frames) {
            Some(t) => t,
            None => {
                frames.free(frame);
                return Err(OutOfMemory);
            }
        };
        let mut leaf = frame.into_addr() | PRESENT | USER;
        if flags.writable {
            leaf |= WRITABLE;
        }
        if !flags.executable {
            leaf |= NO_EXECUTE;
        }
        // SAFETY: `t` is the page table for vaddr; the entry is inside it.
        unsafe { table(t).add(index(vaddr, 1)).write(leaf) };
        self.remember_page(vaddr);
        Ok(())
    }

    /// The page table (level 1) that maps `vaddr`, made (with the tables above it) if it is
    /// missing; `None` if a frame for one cannot be had.
    fn leaf_table(&mut self, vaddr: u64, frames: &mut impl FrameAlloc) -> Option<u64> {
        if vaddr >> 21 == self.leaf_region {
            return Some(self.leaf_table);
        }
        let mut t = self.pml4;
        for level in [4, 3, 2] {
            // SAFETY: `t` is a page table of this address space (identity-mapped frame).
            let entry = unsafe { table(t).add(index(vaddr, level)) };
            // SAFETY: as above; the entry is inside the table.
            let mut value = unsafe { entry.read() };
            if value & PRESENT == 0 {
                let next = frames.alloc_zeroed()?.into_addr();
                self.remember_table(next);
                value = next | PRESENT | WRITABLE | USER;
                // SAFETY: as above.
                unsafe { entry.write(value) };
            }
            t = value & ADDR_MASK;
        }
        self.leaf_region = vaddr >> 21;
        self.leaf_table = t;
        Some(t)
    }

    fn remember_table(&mut self, phys: u64) {
        match self.tables.get_mut(self.table_count) {
            Some(slot) => {
                *slot = phys;
                self.table_count += 1;
            }
            None => self.untracked = true,
        }
    }

    fn remember_page(&mut self, vaddr: u64) {
        if let Some((first, count)) = self.run_count.checked_sub(1).map(|i| &mut self.runs[i]) {
            if *first + *count * 4096 == vaddr {
                *count += 1;
                return;
            }
            // A stack's pages come downwards, one fault at a time.
            if vaddr + 4096 == *first {
                *first = vaddr;
                *count += 1;
                return;
            }
        }
        match self.runs.get_mut(self.run_count) {
            Some(run) => {
                *run = (vaddr, 1);
                self.run_count += 1;
            }
            None => self.untracked = true,
        }
    }

    /// The frame and flags behind the user page at `vaddr`, if it is mapped for ring 3.
    pub fn translate(&self, vaddr: u64) -> Option<(u64, PageFlags)> {
        if !(USER_BASE..USER_END).contains(&vaddr) {
            return None;
        }
        let mut t = self.pml4;
        let mut writable = true;
        for level in [4, 3, 2, 1] {
            // SAFETY: `t` is a page table of this address space; the entry is inside it.
            let value = unsafe { table(t).add(index(vaddr, level)).read() };
            if value & (PRESENT | USER) != PRESENT | USER {
                return None;
            }
            writable &= value & WRITABLE != 0;
            if level == 1 {
                let flags = PageFlags { writable, executable: value & NO_EXECUTE == 0 };
                return Some((value & ADDR_MASK, flags));
            }
            t = value & ADDR_MASK;
        }
        None
    }

    /// Frees every user page and page table, and the PML4. The address space must not be
    /// current.
    pub fn destroy(self, frames: &mut impl FrameAlloc) {
        if self.untracked {
            for slot in 1..ENTRIES / 2 {
                // SAFETY: reading the PML4's own entries.
                let pdpt = unsafe { table(self.pml4).add(slot).read() };
                if pdpt & PRESENT != 0 {
                    free_level(frames, pdpt & ADDR_MASK, 3);
                }
            }
        } else {
            for &(first, count) in &self.runs[..self.run_count] {
                for page in (0..count).map(|i| first + i * 4096) {
                    if let Some((frame, _)) = self.translate(page) {
                        // SAFETY: a leaf entry's frame was given to `map`, which made the
                        // address space its owner; the space is dying and the entry goes.
                        frames.free(unsafe { Frame::from_addr(frame) });
                    }
                }
            }
            for &t in &self.tables[..self.table_count] {
                // SAFETY: a table `map` allocated for this dying space, remembered once.
                frames.free(unsafe { Frame::from_addr(t) });
            }
        }
        // SAFETY: the PML4 `new` allocated for this space, which `self` (moved) owned.
        frames.free(unsafe { Frame::from_addr(self.pml4) });
    }
}

/// Frees the table at `phys` of `level` (3 = PDPT) and everything below it.
fn free_level(frames: &mut impl FrameAlloc, phys: u64, level: u32) {
    for i in 0..ENTRIES {
        // SAFETY: `phys` is a page table of a dying address space; the entry is inside it.
        let value = unsafe { table(phys).add(i).read() };
        if value & PRESENT == 0 {
            continue;
        }
        if level == 1 {
            // SAFETY: a leaf frame `map` took over for the dying space; its entry goes.
            frames.free(unsafe { Frame::from_addr(value & ADDR_MASK) });
        } else {
            free_level(frames, value & ADDR_MASK, level - 1);
        }
    }
    // SAFETY: a table `map` allocated for the dying space; its parent entry goes.
    frames.free(unsafe { Frame::from_addr(phys) });
}
