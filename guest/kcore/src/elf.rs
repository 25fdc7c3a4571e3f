//! Validation of user-program ELF files. The kernel trusts nothing in them: every field that
//! decides what gets mapped where is checked here before a byte is copied.

use lde_abi::user::{USER_BASE, USER_STACK_GUARD};

/// Most loadable segments a program may have.
pub const MAX_SEGMENTS: usize = 8;
const PAGE: u64 = 4096;

/// One PT_LOAD segment, checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// First virtual address.
    pub vaddr: u64,
    /// Bytes in memory (the part beyond `file_size` is zero).
    pub mem_size: u64,
    /// Offset of the file bytes in the ELF.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// First page (address) the segment touches.
    pub fn page_start(&self) -> u64 {
        self.vaddr & !(PAGE - 1)
    }

    /// End (exclusive, page-aligned) of the pages the segment touches.
    pub fn page_end(&self) -> u64 {
        (self.vaddr + self.mem_size).div_ceil(PAGE) * PAGE
    }
}

/// A user program that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserImage {
    pub entry: u64,
    pub segments: [Segment; MAX_SEGMENTS],
    pub segment_count: usize,
}

impl UserImage {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.segment_count]
    }
}

/// Why an ELF file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    TooShort,
    NotElf,
    WrongKind,
    PositionIndependent,
    Dynamic,
    BadProgramHeaders,
    TooManySegments,
    NoSegments,
    SegmentOutsideFile,
    SegmentOutsideUserSpace,
    FileSizeAboveMemSize,
    WritableAndExecutable,
    SegmentsOverlap,
    EntryNotExecutable,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            ElfError::TooShort => "file too short for an ELF header",
            ElfError::NotElf => "not an ELF file",
            ElfError::WrongKind => "not a 64-bit little-endian x86-64 executable",
            ElfError::PositionIndependent => {
                "a position-independent executable (PIE) or shared object: link a static, non-PIE executable"
            }
            ElfError::Dynamic => "a dynamically linked executable (it names an interpreter): link it statically",
            ElfError::BadProgramHeaders => "program header table is malformed or outside the file",
            ElfError::TooManySegments => "more than 8 loadable segments",
            ElfError::NoSegments => "no loadable segment",
            ElfError::SegmentOutsideFile => "a segment's bytes lie outside the file",
            ElfError::SegmentOutsideUserSpace => {
                return write!(
                    f,
                    "a segment lies outside user space ({USER_BASE:#x} to {USER_STACK_GUARD:#x}): link the program \
                     at {USER_BASE:#x}"
                );
            }
            ElfError::FileSizeAboveMemSize => "a segment's file size exceeds its memory size",
            ElfError::WritableAndExecutable => "a segment is both writable and executable (W^X)",
            ElfError::SegmentsOverlap => "segments share a page",
            ElfError::EntryNotExecutable => "the entry point is not in an executable segment",
        };
        f.write_str(text)
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// Checks `file` and describes what to load.
pub fn parse(file: &[u8]) -> Result<UserImage, ElfError> {
    if file.len() < EHDR_SIZE {
        return Err(ElfError::TooShort);
    }
    if &file[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    // Class 64, little-endian, version 1, ET_EXEC, EM_X86_64.
    if file[4] != 2 || file[5] != 1 || file[6] != 1 || u16_at(file, 18) != 62 {
        return Err(ElfError::WrongKind);
    }
    match u16_at(file, 16) {
        ET_EXEC => {}
        ET_DYN => return Err(ElfError::PositionIndependent),
        _ => return Err(ElfError::WrongKind),
    }
    let entry = u64_at(file, 24);
    let phoff = u64_at(file, 32);
    let phentsize = u16_at(file, 54) as usize;
    let phnum = u16_at(file, 56) as usize;
    if phentsize != PHDR_SIZE {
        return Err(ElfError::BadProgramHeaders);
    }
    let table_end = usize::try_from(phoff)
        .ok()
        .and_then(|off| off.checked_add(phnum * PHDR_SIZE).map(|end| (off, end)))
        .filter(|&(_, end)| end <= file.len())
        .ok_or(ElfError::BadProgramHeaders)?;

    let mut image = UserImage { entry, segments: [Segment::default(); MAX_SEGMENTS], segment_count: 0 };
    for i in 0..phnum {
        let ph = &file[table_end.0 + i * PHDR_SIZE..table_end.0 + (i + 1) * PHDR_SIZE];
        if u32_at(ph, 0) == PT_INTERP {
            return Err(ElfError::Dynamic);
        }
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let flags = u32_at(ph, 4);
        let seg = Segment {
            file_offset: u64_at(ph, 8),
            vaddr: u64_at(ph, 16),
            file_size: u64_at(ph, 32),
            mem_size: u64_at(ph, 40),
            writable: flags & PF_W != 0,
            executable: flags & PF_X != 0,
        };
        if seg.mem_size == 0 {
            continue;
        }
        if image.segment_count == MAX_SEGMENTS {
            return Err(ElfError::TooManySegments);
        }
        if seg.file_size > seg.mem_size {
            return Err(ElfError::FileSizeAboveMemSize);
        }
        match seg.file_offset.checked_add(seg.file_size) {
            Some(end) if end <= file.len() as u64 => {}
            _ => return Err(ElfError::SegmentOutsideFile),
        }
        match seg.vaddr.checked_add(seg.mem_size) {
            Some(end) if seg.vaddr >= USER_BASE && end <= USER_STACK_GUARD => {}
            _ => return Err(ElfError::SegmentOutsideUserSpace),
        }
        if seg.writable && seg.executable {
            return Err(ElfError::WritableAndExecutable);
        }
        for other in image.segments() {
            if seg.page_start() < other.page_end() && other.page_start() < seg.page_end() {
                return Err(ElfError::SegmentsOverlap);
            }
        }
        image.segments[image.segment_count] = seg;
        image.segment_count += 1;
    }
    if image.segment_count == 0 {
        return Err(ElfError::NoSegments);
    }
    let entry_ok = image.segments().iter().any(|s| s.executable && entry >= s.vaddr && entry < s.vaddr + s.mem_size);
    if !entry_ok {
        return Err(ElfError::EntryNotExecutable);
    }
    Ok(image)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds a minimal ELF with the given (vaddr, memsz, filesz, flags) PT_LOAD segments.
    pub fn make_elf(entry: u64, segments: &[(u64, u64, u64, u32)]) -> [u8; 1024] {
        let mut f = [0u8; 1024];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, &(vaddr, memsz, filesz, flags)) in segments.iter().enumerate() {
            let ph = 64 + i * 56;
            f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[ph + 4..ph + 8].copy_from_slice(&flags.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&512u64.to_le_bytes());
            f[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f
    }

    const RX: u32 = 5;
    const RW: u32 = 6;
    const RWX: u32 = 7;

    #[test]
    fn accepts_a_well_formed_program() {
        let elf = make_elf(USER_BASE + 0x10, &[(USER_BASE, 0x100, 0x100, RX), (USER_BASE + 0x1000, 0x2000, 0x10, RW)]);
        let image = parse(&elf).unwrap();
        assert_eq!(image.entry, USER_BASE + 0x10);
        assert_eq!(image.segments().len(), 2);
        assert!(image.segments()[1].writable && !image.segments()[1].executable);
        assert_eq!(image.segments()[1].page_end(), USER_BASE + 0x3000);
    }

    #[test]
    fn rejects_hostile_headers() {
        assert_eq!(parse(b"short"), Err(ElfError::TooShort));
        assert_eq!(parse(&[0u8; 64]), Err(ElfError::NotElf));
        let mut elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        elf[4] = 1;
        assert_eq!(parse(&elf), Err(ElfError::WrongKind));
        let mut elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        elf[16] = 3; // ET_DYN
        assert_eq!(parse(&elf), Err(ElfError::PositionIndependent));
        let mut elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        let phoff = u64_at(&elf, 32) as usize;
        elf[phoff..phoff + 4].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(parse(&elf), Err(ElfError::Dynamic));

        let mut elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        elf[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse(&elf), Err(ElfError::BadProgramHeaders));
        let mut elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        elf[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(parse(&elf), Err(ElfError::BadProgramHeaders));

        // Into the kernel's half, wrapping around, onto the stack guard.
        assert_eq!(
            parse(&make_elf(0x10_0000, &[(0x10_0000, 0x100, 0x100, RX)])),
            Err(ElfError::SegmentOutsideUserSpace)
        );
        assert_eq!(
            parse(&make_elf(USER_BASE, &[(u64::MAX - 10, 0x100, 0x10, RX)])),
            Err(ElfError::SegmentOutsideUserSpace)
        );
        assert_eq!(
            parse(&make_elf(USER_BASE, &[(USER_STACK_GUARD - 0x10, 0x100, 0x10, RX)])),
            Err(ElfError::SegmentOutsideUserSpace)
        );
        assert_eq!(parse(&make_elf(USER_BASE, &[(USER_BASE, 0x10, 0x100, RX)])), Err(ElfError::FileSizeAboveMemSize));
        assert_eq!(parse(&make_elf(USER_BASE, &[(USER_BASE, 0x1000, 0x1000, RX)])), Err(ElfError::SegmentOutsideFile));
        assert_eq!(
            parse(&make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RWX)])),
            Err(ElfError::WritableAndExecutable)
        );
        assert_eq!(
            parse(&make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x10, RX), (USER_BASE + 0x800, 0x100, 0x10, RW)])),
            Err(ElfError::SegmentsOverlap)
        );
        assert_eq!(
            parse(&make_elf(USER_BASE + 0x1000, &[(USER_BASE, 0x100, 0x10, RX)])),
            Err(ElfError::EntryNotExecutable)
        );
        assert_eq!(
            parse(&make_elf(USER_BASE, &[(USER_BASE + 0x1000, 0x100, 0x10, RW), (USER_BASE, 0x100, 0x10, RX)]))
                .unwrap()
                .segments()
                .len(),
            2
        );
        assert_eq!(parse(&make_elf(USER_BASE, &[])), Err(ElfError::NoSegments));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let elf = make_elf(USER_BASE, &[(USER_BASE, 0x100, 0x100, RX)]);
        // The segment's bytes (at file offset 512) are the last the file refers to; make_elf
        // pads the rest of its 1024 bytes, which a cut may take away.
        let end = 512 + 0x100;
        for len in 0..elf.len() {
            let parsed = parse(&elf[..len]);
            assert_eq!(parsed.is_err(), len < end, "cut to {len} bytes: {parsed:?}");
        }
    }
}
