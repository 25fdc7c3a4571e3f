//! The PVH boot protocol structures (Xen's `hvm_start_info`, version 1), as the VMM writes them
//! and the kernel reads them. See <https://xenbits.xen.org/docs/unstable/misc/pvh.html>.

/// `hvm_start_info.magic`: "xEn3" with the high bit of each byte flipped.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// ELF note type of the 32-bit PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const PVH_ENTRY_NOTE_TYPE: u32 = 18;
/// Memory-map entry type: usable RAM.
pub const MEMMAP_RAM: u32 = 1;
/// Memory-map entry type: reserved.
pub const MEMMAP_RESERVED: u32 = 2;

/// The start-of-day information the VMM leaves in guest memory; its address is in `ebx` at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u32,
    /// Version of this structure (1 with a memory map).
    pub version: u32,
    /// SIF_* flags; unused by lde.
    pub flags: u32,
    /// Number of [`ModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the RSDP; 0 when there is none (lde provides no ACPI).
    pub rsdp_paddr: u64,
    /// Physical address of the memory map.
    pub memmap_paddr: u64,
    /// Number of [`MemmapEntry`] at `memmap_paddr`.
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// One module (lde passes one: the initrd with the user programs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Physical address of the module's command line, or 0.
    pub cmdline_paddr: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// One range of the guest-physical memory map (E820 style).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemmapEntry {
    /// First byte of the range.
    pub addr: u64,
    /// Size of the range in bytes.
    pub size: u64,
    /// [`MEMMAP_RAM`], [`MEMMAP_RESERVED`], ...
    pub kind: u32,
    /// Must be zero.
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<StartInfo>() == 56);
const _: () = assert!(core::mem::size_of::<ModlistEntry>() == 32);
const _: () = assert!(core::mem::size_of::<MemmapEntry>() == 24);
