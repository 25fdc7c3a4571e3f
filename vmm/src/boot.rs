//! Loading the kernel ELF and writing the PVH boot data (start info, memory map, module list,
//! command line) into guest memory, at the places [`crate::layout`] names.

use std::io::Cursor;

use lde_abi::boot::START_INFO_MAGIC;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{elf, layout};

/// Why a kernel could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian x86-64 executable ELF")]
    WrongElfKind,
    #[error("no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): this kernel cannot be booted through PVH")]
    NoPvhEntry,
    #[error("the PVH entry point {0:#x} is outside guest RAM")]
    BadEntry(u64),
    #[error("the kernel does not fit in guest memory (it needs RAM up to {0:#x})")]
    KernelTooBig(u64),
    #[error("the file is truncated: a segment needs its bytes up to offset {needs:#x}, the file has {has:#x}")]
    Truncated { needs: u64, has: u64 },
    #[error("a segment's size overflows the address space")]
    SegmentOverflow,
    #[error("invalid kernel image")]
    Load(#[source] linux_loader::loader::Error),
    #[error("the kernel command line is {0} bytes, more than the limit of {max} (fewer or shorter programs, or a shorter --cmdline)", max = CMDLINE_MAX_LEN)]
    CmdlineTooLong(usize),
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("the programs ({0} bytes) do not fit in guest memory above the kernel: give more --mem")]
    InitrdTooBig(usize),
    #[error("cannot write the boot data to guest memory")]
    Write(#[source] linux_loader::configurator::Error),
    #[error("cannot write to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// Where the vCPU starts: the PVH entry, with `ebx` = the start info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub entry: GuestAddress,
    pub start_info: GuestAddress,
}

/// Checks what linux-loader does not: that this is a 64-bit x86-64 executable.
pub fn check_elf(image: &[u8]) -> Result<(), Error> {
    elf::check_executable(image).map_err(|e| match e {
        elf::Error::NotElf => Error::NotElf,
        elf::Error::WrongKind | elf::Error::Malformed(_) => Error::WrongElfKind,
    })
}

/// Longest kernel command line lde passes (the kernel reads [`layout::CMDLINE_MAX_SIZE`] bytes
/// with the NUL).
pub const CMDLINE_MAX_LEN: usize = layout::CMDLINE_MAX_SIZE - 1;

/// Checks that `cmdline` can be passed to the kernel whole.
pub fn check_cmdline(cmdline: &str) -> Result<(), Error> {
    if cmdline.len() > CMDLINE_MAX_LEN {
        return Err(Error::CmdlineTooLong(cmdline.len()));
    }
    if cmdline.contains('\0') {
        return Err(Error::CmdlineNul);
    }
    Ok(())
}

/// Checks what can be checked of `kernel` before a VM exists: its kind, and each loadable
/// segment against the file (truncated?) and guest memory (does it fit?).
pub fn check_kernel(kernel: &[u8], mem_size: u64) -> Result<(), Error> {
    check_elf(kernel)?;
    check_segments(kernel, mem_size)
}

/// Checks each loadable segment of `kernel` against the file and guest memory, before
/// linux-loader copies them.
fn check_segments(kernel: &[u8], mem_size: u64) -> Result<(), Error> {
    let segments = elf::load_segments(kernel).map_err(|_| Error::WrongElfKind)?;
    for segment in segments {
        let file_end = segment.file_end().ok_or(Error::SegmentOverflow)?;
        if file_end > kernel.len() as u64 {
            return Err(Error::Truncated { needs: file_end, has: kernel.len() as u64 });
        }
        let phys_end = segment.phys_end().ok_or(Error::SegmentOverflow)?;
        if phys_end > mem_size {
            return Err(Error::KernelTooBig(phys_end));
        }
    }
    Ok(())
}

/// Zeroes the part of each loadable segment of `kernel` past its file bytes (its BSS), as an ELF
/// loader must: linux-loader copies the file bytes only, and guest RAM need not be zero (the
/// dirty-ram test hook fills it). `kernel` has passed [`check_kernel`].
fn zero_bss(mem: &GuestMemoryMmap, kernel: &[u8]) -> Result<(), Error> {
    const ZEROS: [u8; 4096] = [0; 4096];
    for segment in elf::load_segments(kernel).map_err(|_| Error::WrongElfKind)? {
        let start = segment.phys_addr.saturating_add(segment.file_size);
        let end = segment.phys_end().unwrap_or(start);
        let mut at = start;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64);
            mem.write_slice(&ZEROS[..n as usize], GuestAddress(at)).map_err(Error::Memory)?;
            at += n;
        }
    }
    Ok(())
}

/// Loads `kernel` and writes the boot data for `cmdline` and an optional `initrd`.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel: &[u8],
    cmdline: &str,
    initrd: Option<&[u8]>,
) -> Result<BootEntry, Error> {
    check_kernel(kernel, mem_size)?;
    check_cmdline(cmdline)?;
    let loaded = Elf::load(mem, None, &mut Cursor::new(kernel), Some(layout::HIGH_RAM_START)).map_err(Error::Load)?;
    if loaded.kernel_end > mem_size {
        return Err(Error::KernelTooBig(loaded.kernel_end));
    }
    zero_bss(mem, kernel)?;
    let entry = match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => addr,
        _ => return Err(Error::NoPvhEntry),
    };
    if entry.0 < layout::HIGH_RAM_START.0 || entry.0 >= mem_size {
        return Err(Error::BadEntry(entry.0));
    }

    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, layout::CMDLINE_ADDR).map_err(Error::Memory)?;

    let mut start_info = hvm_start_info {
        magic: START_INFO_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE_ADDR.0,
        memmap_paddr: layout::PVH_MEMMAP_ADDR.0,
        ..Default::default()
    };
    let memmap: Vec<hvm_memmap_table_entry> = layout::memory_map(mem_size)
        .into_iter()
        .map(|(addr, size, kind)| hvm_memmap_table_entry { addr: addr.0, size, type_: kind, reserved: 0 })
        .collect();
    start_info.memmap_entries = memmap.len() as u32;

    let mut module = None;
    if let Some(initrd) = initrd {
        let addr = layout::initrd_addr(mem_size, initrd.len() as u64, loaded.kernel_end)
            .ok_or(Error::InitrdTooBig(initrd.len()))?;
        mem.write_slice(initrd, addr).map_err(Error::Memory)?;
        module = Some(hvm_modlist_entry { paddr: addr.0, size: initrd.len() as u64, ..Default::default() });
        start_info.nr_modules = 1;
        start_info.modlist_paddr = layout::PVH_MODLIST_ADDR.0;
    }

    let mut params = BootParams::new(&start_info, layout::PVH_START_INFO_ADDR);
    params.set_sections(&memmap, layout::PVH_MEMMAP_ADDR);
    if let Some(module) = module {
        params.set_modules(&[module], layout::PVH_MODLIST_ADDR);
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(Error::Write)?;
    Ok(BootEntry { entry, start_info: layout::PVH_START_INFO_ADDR })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lde_abi::boot::{MemmapEntry, ModlistEntry, StartInfo, MEMMAP_RAM};
    use std::mem::size_of;

    const MEM: u64 = 32 << 20;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
    }

    fn read<T: Default + Copy>(mem: &GuestMemoryMmap, addr: u64) -> T {
        let mut buf = vec![0u8; size_of::<T>()];
        mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        // SAFETY: T is one of the plain-old-data boot structures and buf holds size_of::<T>()
        // bytes; read_unaligned copes with the Vec's alignment.
        unsafe { (buf.as_ptr() as *const T).read_unaligned() }
    }

    #[test]
    fn abi_structs_match_linux_loader() {
        assert_eq!(size_of::<StartInfo>(), size_of::<hvm_start_info>());
        assert_eq!(size_of::<MemmapEntry>(), size_of::<hvm_memmap_table_entry>());
        assert_eq!(size_of::<ModlistEntry>(), size_of::<hvm_modlist_entry>());
    }

    #[test]
    fn the_kernels_bss_is_zeroed_in_dirty_ram() {
        let mem = memory();
        mem.write_slice(&vec![0xa5; MEM as usize], GuestAddress(0)).unwrap();
        load(&mem, MEM, crate::guest::KERNEL, "", None).unwrap();
        let mut bss_bytes = 0;
        for segment in elf::load_segments(crate::guest::KERNEL).unwrap() {
            let bss = (segment.mem_size - segment.file_size) as usize;
            let mut bytes = vec![0xffu8; bss];
            mem.read_slice(&mut bytes, GuestAddress(segment.phys_addr + segment.file_size)).unwrap();
            assert!(bytes.iter().all(|&b| b == 0), "{segment:?}");
            bss_bytes += bss;
        }
        assert!(bss_bytes > 0, "the kernel has a BSS");
    }

    #[test]
    fn writes_start_info_memmap_cmdline_and_initrd() {
        let mem = memory();
        let initrd = vec![0xab; 5000];
        let boot = load(&mem, MEM, crate::guest::KERNEL, "lde.test=panic x=1", Some(&initrd)).unwrap();
        assert_eq!(boot.start_info, layout::PVH_START_INFO_ADDR);
        assert_eq!(boot.entry, layout::HIGH_RAM_START, "kernel.ld puts pvh_start first");

        let info: StartInfo = read(&mem, layout::PVH_START_INFO_ADDR.0);
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!(info.cmdline_paddr, layout::CMDLINE_ADDR.0);
        assert_eq!(info.memmap_paddr, layout::PVH_MEMMAP_ADDR.0);
        assert_eq!(info.memmap_entries, 3);
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, layout::PVH_MODLIST_ADDR.0);

        // The raw bytes of the header, as the kernel reads them.
        let mut raw = [0u8; 8];
        mem.read_slice(&mut raw, layout::PVH_START_INFO_ADDR).unwrap();
        assert_eq!(raw, [0x78, 0xc5, 0x6e, 0x33, 1, 0, 0, 0]);

        let last: MemmapEntry = read(&mem, layout::PVH_MEMMAP_ADDR.0 + 2 * 24);
        assert_eq!((last.addr, last.addr + last.size, last.kind), (0x10_0000, MEM, MEMMAP_RAM));

        let module: ModlistEntry = read(&mem, layout::PVH_MODLIST_ADDR.0);
        assert_eq!(module.size, 5000);
        assert_eq!(module.paddr, MEM - 0x2000);
        let mut back = vec![0u8; 5000];
        mem.read_slice(&mut back, GuestAddress(module.paddr)).unwrap();
        assert_eq!(back, initrd);

        let mut cmdline = [0u8; 19];
        mem.read_slice(&mut cmdline, layout::CMDLINE_ADDR).unwrap();
        assert_eq!(&cmdline, b"lde.test=panic x=1\0");
    }

    #[test]
    fn no_initrd_means_no_modules() {
        let mem = memory();
        load(&mem, MEM, crate::guest::KERNEL, "", None).unwrap();
        let info: StartInfo = read(&mem, layout::PVH_START_INFO_ADDR.0);
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }

    #[test]
    fn rejects_what_is_not_a_pvh_kernel() {
        let mem = memory();
        let passwd = b"root:x:0:0:root:/root:/bin/bash\n".repeat(4);
        assert!(matches!(load(&mem, MEM, &passwd, "", None), Err(Error::NotElf)));
        let mut elf32 = crate::guest::KERNEL.to_vec();
        elf32[4] = 1;
        assert!(matches!(load(&mem, MEM, &elf32, "", None), Err(Error::WrongElfKind)));
        let truncated = &crate::guest::KERNEL[..200];
        assert!(load(&mem, MEM, truncated, "", None).is_err());
        let long = "x".repeat(layout::CMDLINE_MAX_SIZE);
        assert!(matches!(load(&mem, MEM, crate::guest::KERNEL, &long, None), Err(Error::CmdlineTooLong(4096))));
        let cut = &crate::guest::KERNEL[..crate::guest::KERNEL.len() / 2];
        assert!(
            matches!(load(&mem, MEM, cut, "", None), Err(Error::Truncated { .. })),
            "{:?}",
            load(&mem, MEM, cut, "", None)
        );
        let huge = vec![0; MEM as usize];
        assert!(matches!(load(&mem, MEM, crate::guest::KERNEL, "", Some(&huge)), Err(Error::InitrdTooBig(_))));
    }

    #[test]
    fn broken_kernels_give_errors_not_panics() {
        // Loading, not only reading: every corruption the ELF reader's tests make.
        let mem = memory();
        let kernel = crate::guest::KERNEL;
        let segments_end = crate::elf::tests::segments_end(kernel);
        assert_eq!(crate::elf::tests::shdrs_end(kernel), kernel.len(), "the section headers end the file");
        for (what, bad) in crate::elf::tests::corruptions(kernel) {
            let loaded = load(&mem, MEM, &bad, "", Some(&[1, 2, 3]));
            // A cut into the loadable bytes fails to load, however much is left; a cut after
            // them (into the section headers, last in the file) fails where lde next reads the
            // file, to find the stats page. A flipped byte may still give a kernel that loads,
            // only never a panic.
            if bad.len() < segments_end {
                assert!(loaded.is_err(), "{what}");
            }
            if bad.len() < kernel.len() {
                let stats = crate::elf::find_symbol(&bad, lde_abi::stats::STATS_SYMBOL);
                assert!(stats.is_err(), "{what}: {stats:?}");
            }
        }
    }

    #[test]
    fn rejects_a_kernel_without_pvh_note() {
        // Turn the note's type into another one: the loader then finds no PVH entry.
        let mut kernel = crate::guest::KERNEL.to_vec();
        let pos =
            kernel.windows(12).position(|w| w == [4, 0, 0, 0, 4, 0, 0, 0, 18, 0, 0, 0]).expect("the PVH note header");
        kernel[pos + 8] = 17;
        assert!(matches!(load(&memory(), MEM, &kernel, "", None), Err(Error::NoPvhEntry)));
    }
}
