//! The host's one ELF reader, on the `object` crate: the checks a kernel image must pass before
//! linux-loader loads it, and symbol lookup (the stats page's address).
//!
//! Every offset, count and size in the file is checked (by `object`, or here with checked
//! arithmetic) against the file's length, so a crafted or truncated image gives an error, never
//! a panic, and a symbol lookup is linear: each symbol is read once and its name compared over
//! at most the length of the name sought (a string table without NULs cannot make it scan).

use object::elf::{ELFMAG, EM_X86_64, ET_EXEC, PT_LOAD, SHT_SYMTAB};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{FileKind, LittleEndian};

type Header = object::elf::FileHeader64<LittleEndian>;

/// Why an ELF file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an ELF file")]
    NotElf,
    #[error("not a 64-bit little-endian x86-64 executable ELF")]
    WrongKind,
    #[error("malformed ELF")]
    Malformed(#[source] object::read::Error),
}

/// The ELF header of a 64-bit little-endian x86-64 executable.
fn header(image: &[u8]) -> Result<&Header, Error> {
    if image.len() < std::mem::size_of::<Header>() || !image.starts_with(&ELFMAG) {
        return Err(Error::NotElf);
    }
    if !matches!(FileKind::parse(image), Ok(FileKind::Elf64)) {
        return Err(Error::WrongKind);
    }
    // A big-endian ELF64 fails here: the header's byte order is not LittleEndian.
    let header = Header::parse(image).map_err(|_| Error::WrongKind)?;
    let endian = LittleEndian;
    if header.e_type(endian) != ET_EXEC || header.e_machine(endian) != EM_X86_64 {
        return Err(Error::WrongKind);
    }
    Ok(header)
}

/// Checks what linux-loader does not: that `image` is a 64-bit little-endian x86-64
/// executable. Reads the ELF header only.
pub fn check_executable(image: &[u8]) -> Result<(), Error> {
    header(image).map(|_| ())
}

/// The value (address) of the symbol `name` in the symbol table of `image`; `Ok(None)` if it
/// has none of that name.
pub fn find_symbol(image: &[u8], name: &str) -> Result<Option<u64>, Error> {
    let header = header(image)?;
    let endian = LittleEndian;
    let sections = header.sections(endian, image).map_err(Error::Malformed)?;
    let symbols = sections.symbols(endian, image, SHT_SYMTAB).map_err(Error::Malformed)?;
    if symbols.is_empty() {
        return Ok(None);
    }
    let strings = sections
        .section(symbols.string_section())
        .and_then(|section| section.data(endian, image))
        .map_err(Error::Malformed)?;
    // The bytes `name` and its NUL would occupy; compared without looking further.
    let wanted = name.len() + 1;
    for symbol in symbols.iter() {
        let start = symbol.st_name(endian) as usize;
        let found = start.checked_add(wanted).and_then(|end| strings.get(start..end));
        if found.is_some_and(|s| &s[..name.len()] == name.as_bytes() && s[name.len()] == 0) {
            return Ok(Some(symbol.st_value(endian)));
        }
    }
    Ok(None)
}

/// A loadable segment of an ELF file: where its bytes are in the file and where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub file_size: u64,
    pub phys_addr: u64,
    pub mem_size: u64,
}

impl Segment {
    /// The end of its bytes in the file, if that is a number.
    pub fn file_end(&self) -> Option<u64> {
        self.file_offset.checked_add(self.file_size)
    }

    /// The end of its place in guest-physical memory, if that is a number.
    pub fn phys_end(&self) -> Option<u64> {
        self.phys_addr.checked_add(self.mem_size)
    }
}

/// The loadable segments of an executable, as its program headers say (not yet checked
/// against the file or memory: see [`Segment::file_end`] and [`Segment::phys_end`]).
pub fn load_segments(image: &[u8]) -> Result<Vec<Segment>, Error> {
    let header = header(image)?;
    let endian = LittleEndian;
    let headers = header.program_headers(endian, image).map_err(Error::Malformed)?;
    Ok(headers
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| Segment {
            file_offset: ph.p_offset(endian),
            file_size: ph.p_filesz(endian),
            phys_addr: ph.p_paddr(endian),
            mem_size: ph.p_memsz(endian),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lde_abi::stats::STATS_SYMBOL;

    fn u64_at(b: &[u8], o: usize) -> usize {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize
    }

    /// Broken copies of `elf`: cut at many lengths, and with bytes flipped across its section
    /// headers and the tables they point to. The same fixture feeds every ELF reader here.
    /// The end of the last loadable segment's bytes in the file.
    pub(crate) fn segments_end(elf: &[u8]) -> usize {
        load_segments(elf).unwrap().iter().map(|s| s.file_end().unwrap() as usize).max().unwrap()
    }

    /// The end of the section header table in the file.
    pub(crate) fn shdrs_end(elf: &[u8]) -> usize {
        u64_at(elf, 0x28) + usize::from(u16::from_le_bytes([elf[0x3c], elf[0x3d]])) * 64
    }

    pub(crate) fn corruptions(elf: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cut = 0;
        while cut < elf.len() {
            out.push((format!("cut at {cut}"), elf[..cut].to_vec()));
            cut = if cut < 256 { cut + 1 } else { cut * 9 / 8 };
        }
        out.push(("cut by one".into(), elf[..elf.len() - 1].to_vec()));
        let shoff = u64_at(elf, 0x28);
        let shnum = u16::from_le_bytes([elf[0x3c], elf[0x3d]]) as usize;
        let mut spots: Vec<usize> = (0x18..0x40).collect(); // program/section header fields
        for i in 0..shnum {
            let sh = shoff + i * 64;
            spots.extend([sh, sh + 4, sh + 0x18, sh + 0x1f, sh + 0x20, sh + 0x27, sh + 0x28, sh + 0x38]);
            // The first bytes of what the section points to (symbols, names).
            let offset = u64_at(elf, sh + 0x18);
            spots.extend((0..48).map(|k| offset + k * 7).filter(|&o| o < elf.len()));
        }
        for at in spots {
            for flip in [0xff, 0x80, 0x01] {
                let mut bad = elf.to_vec();
                bad[at] ^= flip;
                out.push((format!("byte {at:#x} ^ {flip:#x}"), bad));
            }
        }
        out
    }

    #[test]
    fn finds_the_stats_page_and_checks_the_kernel() {
        let kernel = crate::guest::KERNEL;
        check_executable(kernel).unwrap();
        let addr = find_symbol(kernel, STATS_SYMBOL).unwrap().expect("LDE_STATS in the kernel");
        assert_eq!(addr % 4096, 0);
        assert_eq!(find_symbol(kernel, "no_such_symbol_here").unwrap(), None);
        assert!(matches!(check_executable(b"not an elf"), Err(Error::NotElf)));
        let mut elf32 = kernel.to_vec();
        elf32[4] = 1;
        assert!(matches!(check_executable(&elf32), Err(Error::WrongKind)));
        let program = crate::guest::program("hello").unwrap().elf;
        check_executable(program).unwrap();
    }

    #[test]
    fn broken_kernels_give_errors_not_panics() {
        let kernel = crate::guest::KERNEL;
        for (what, bad) in corruptions(kernel) {
            let found = find_symbol(&bad, STATS_SYMBOL);
            let checked = check_executable(&bad);
            if bad.len() < 64 {
                // The header is all the check reads.
                assert!(checked.is_err(), "{what}");
            }
            if bad.len() < kernel.len() {
                // Section headers come last, so every cut loses some: never a wrong answer.
                assert!(found.is_err(), "{what}: {found:?}");
            }
        }
    }

    #[test]
    fn symbol_names_at_the_end_of_the_address_space_are_checked() {
        // Every symbol's name offset near u32::MAX: no overflow, no panic, nothing found.
        let mut kernel = crate::guest::KERNEL.to_vec();
        let (shoff, shnum) = (u64_at(&kernel, 0x28), u16::from_le_bytes([kernel[0x3c], kernel[0x3d]]) as usize);
        let symtab = (0..shnum).map(|i| shoff + i * 64).find(|&sh| kernel[sh + 4] == SHT_SYMTAB as u8).unwrap();
        let (offset, size) = (u64_at(&kernel, symtab + 0x18), u64_at(&kernel, symtab + 0x20));
        for sym in (offset..offset + size).step_by(24) {
            kernel[sym..sym + 4].copy_from_slice(&(u32::MAX - (sym % 7) as u32).to_le_bytes());
        }
        assert_eq!(find_symbol(&kernel, STATS_SYMBOL).unwrap(), None);
    }

    #[test]
    fn broken_programs_give_errors_not_panics_here_and_in_the_kernel() {
        // The same corruptions through the host's reader and the kernel's checker (kcore).
        let program = crate::guest::program("hello").unwrap().elf;
        let segments_end = segments_end(program);
        assert_eq!(shdrs_end(program), program.len(), "the section headers end the file");
        for (what, bad) in corruptions(program) {
            let symbol = find_symbol(&bad, "_start");
            let host = check_executable(&bad);
            let kernel = lde_kcore::elf::parse(&bad);
            // Every cut is an error where the bytes it took away are read, however much is left:
            // the header (the host's check), the loadable bytes (the kernel's), the section
            // headers at the end (the symbol lookup). A flipped byte may still give a valid
            // program, only never a panic.
            if bad.len() < 64 {
                assert!(host.is_err(), "{what}");
            }
            if bad.len() < segments_end {
                assert!(kernel.is_err(), "{what}: {kernel:?}");
            }
            if bad.len() < program.len() {
                assert!(symbol.is_err(), "{what}: {symbol:?}");
            }
        }
    }
}
