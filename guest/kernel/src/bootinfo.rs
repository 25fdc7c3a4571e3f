//! Reading the PVH start info the VMM (or QEMU) left in memory.

use core::cell::UnsafeCell;
use core::mem::size_of;

use lde_abi::boot::{MemmapEntry, ModlistEntry, StartInfo, START_INFO_MAGIC};

/// Boot data must lie below the MMIO hole, in the identity-mapped RAM.
const BOOT_DATA_END: u64 = 0xc000_0000;
/// Longest command line the kernel reads.
const CMDLINE_MAX: usize = 4096;
/// Most memory-map entries the kernel reads.
const MEMMAP_MAX: u32 = 128;

/// Most modules the kernel keeps.
const MODULES_MAX: u32 = 4;

/// What the kernel learned at boot, copied out of the loader's memory.
pub struct BootInfo {
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    memmap: [MemmapEntry; MEMMAP_MAX as usize],
    memmap_len: usize,
    modules: [ModlistEntry; MODULES_MAX as usize],
    modules_len: usize,
}

impl BootInfo {
    /// The kernel command line.
    pub fn cmdline(&self) -> &str {
        // SAFETY: `read` checked that these bytes are UTF-8 (checking again cost every caller
        // ~6 emulated instructions a byte).
        unsafe { core::str::from_utf8_unchecked(&self.cmdline[..self.cmdline_len]) }
    }

    /// The memory map.
    pub fn memmap(&self) -> &[MemmapEntry] {
        &self.memmap[..self.memmap_len]
    }

    /// The modules (lde passes one, the initrd).
    pub fn modules(&self) -> &[ModlistEntry] {
        &self.modules[..self.modules_len]
    }
}

struct Store(UnsafeCell<BootInfo>);

// SAFETY: written only by `read`, once, on the one CPU before interrupts are enabled; shared
// references are handed out only after that.
unsafe impl Sync for Store {}

static STORE: Store = Store(UnsafeCell::new(BootInfo {
    cmdline: [0; CMDLINE_MAX],
    cmdline_len: 0,
    memmap: [MemmapEntry { addr: 0, size: 0, kind: 0, reserved: 0 }; MEMMAP_MAX as usize],
    memmap_len: 0,
    modules: [ModlistEntry { paddr: 0, size: 0, cmdline_paddr: 0, reserved: 0 }; MODULES_MAX as usize],
    modules_len: 0,
}));

/// The copy [`read`] made (all empty before it ran).
pub fn copied() -> &'static BootInfo {
    // SAFETY: `read` writes the store once, at boot, before anything calls this; afterwards it
    // is only read.
    unsafe { &*STORE.0.get() }
}

/// Why the boot information is unusable.
pub enum BootInfoError {
    BadAddress(&'static str, u64),
    BadMagic(u32),
    CmdlineNotUtf8,
    TooManyEntries(&'static str, u32),
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadAddress(what, addr) => write!(f, "{what} at {addr:#x} is outside usable RAM"),
            Self::BadMagic(magic) => write!(f, "bad magic {magic:#x}"),
            Self::CmdlineNotUtf8 => write!(f, "the command line is not UTF-8"),
            Self::TooManyEntries(what, n) => write!(f, "{n} entries in the {what} is too many"),
        }
    }
}

fn check_range(what: &'static str, addr: u64, len: u64) -> Result<(), BootInfoError> {
    match addr.checked_add(len) {
        Some(end) if addr != 0 && end <= BOOT_DATA_END => Ok(()),
        _ => Err(BootInfoError::BadAddress(what, addr)),
    }
}

/// Reads and checks the start info at physical address `paddr` and copies what it describes
/// into kernel memory.
///
/// # Safety
/// Call once, before interrupts are enabled, while the boot data is still mapped.
pub unsafe fn read(paddr: u64) -> Result<&'static BootInfo, BootInfoError> {
    check_range("start info", paddr, size_of::<StartInfo>() as u64)?;
    // SAFETY: the range is inside identity-mapped RAM (checked); unaligned reads are allowed.
    let info: StartInfo = unsafe { (paddr as *const StartInfo).read_unaligned() };
    if info.magic != START_INFO_MAGIC {
        return Err(BootInfoError::BadMagic(info.magic));
    }
    if info.memmap_entries > MEMMAP_MAX {
        return Err(BootInfoError::TooManyEntries("memory map", info.memmap_entries));
    }
    if info.nr_modules > MODULES_MAX {
        return Err(BootInfoError::TooManyEntries("module list", info.nr_modules));
    }
    // SAFETY: the caller calls this once before anything can read STORE.
    let store = unsafe { &mut *STORE.0.get() };

    if info.cmdline_paddr != 0 {
        check_range("command line", info.cmdline_paddr, 1)?;
        let room = (BOOT_DATA_END - info.cmdline_paddr).min(CMDLINE_MAX as u64) as usize;
        let src = info.cmdline_paddr as *const u8;
        let mut len = 0;
        // Eight bytes at a time while a whole word fits and holds no NUL (a zero byte shows as
        // a borrow into its top bit: `(w - 0x01..01) & !w & 0x80..80`), then byte by byte up to
        // the NUL: a byte at a time cost ~5 emulated instructions a byte.
        while len + 8 <= room {
            // SAFETY: cmdline_paddr + len + 8 is at most BOOT_DATA_END, in identity-mapped RAM;
            // unaligned reads are allowed.
            let word = unsafe { (src.add(len) as *const u64).read_unaligned() };
            if word.wrapping_sub(0x0101_0101_0101_0101) & !word & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            store.cmdline[len..len + 8].copy_from_slice(&word.to_le_bytes());
            len += 8;
        }
        while len < room {
            // SAFETY: cmdline_paddr + len is below BOOT_DATA_END, in identity-mapped RAM.
            let b = unsafe { src.add(len).read() };
            if b == 0 {
                break;
            }
            store.cmdline[len] = b;
            len += 1;
        }
        // ASCII (what lde writes) is UTF-8, and `is_ascii` looks at a word at a time where
        // `from_utf8` takes ~6 emulated instructions a byte.
        if !store.cmdline[..len].is_ascii() {
            core::str::from_utf8(&store.cmdline[..len]).map_err(|_| BootInfoError::CmdlineNotUtf8)?;
        }
        store.cmdline_len = len;
    }
    store.memmap_len = copy_table("memory map", info.memmap_paddr, info.memmap_entries, &mut store.memmap)?;
    store.modules_len = copy_table("module list", info.modlist_paddr, info.nr_modules, &mut store.modules)?;
    Ok(store)
}

fn copy_table<T: Copy>(what: &'static str, paddr: u64, count: u32, dst: &mut [T]) -> Result<usize, BootInfoError> {
    let count = count as usize;
    if count == 0 {
        return Ok(0);
    }
    check_range(what, paddr, (size_of::<T>() * count) as u64)?;
    let src = paddr as *const T;
    for (i, slot) in dst[..count].iter_mut().enumerate() {
        // SAFETY: entry i lies inside the checked range; T is plain old data.
        *slot = unsafe { src.add(i).read_unaligned() };
    }
    Ok(count)
}
