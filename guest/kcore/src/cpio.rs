//! The initrd: a cpio archive in the "newc" format (what Linux's initramfs uses), holding the
//! user programs by name. Every header field is checked; a malformed archive ends the listing.

/// One file of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

const MAGIC: &[u8; 6] = b"070701";
const HEADER_SIZE: usize = 110;
const TRAILER: &str = "TRAILER!!!";

fn hex_field(header: &[u8], index: usize) -> Option<usize> {
    let field = header.get(6 + index * 8..6 + (index + 1) * 8)?;
    hex8(field.try_into().ok()?).map(|v| v as usize)
}

/// The value of 8 ASCII hexadecimal digits (either case), or `None` if any byte is not one.
/// All 8 at once (SWAR): a digit at a time cost every process start ~190 emulated instructions
/// where ring 0 is emulated, for the two fields of each entry it passes.
fn hex8(field: [u8; 8]) -> Option<u32> {
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from_be_bytes(field);
    if x & HIGHS != 0 {
        return None;
    }
    // For bytes below 0x80 the sums stay below 0x100 (no carry between bytes): the high bit of
    // each byte of the result says whether that byte lies in lo..=hi.
    let in_range = |v: u64, lo: u64, hi: u64| (v + ONES * (0x80 - lo)) & !(v + ONES * (0x7f - hi)) & HIGHS;
    let digits = in_range(x, u64::from(b'0'), u64::from(b'9'));
    let letters = in_range(x | (ONES * 0x20), u64::from(b'a'), u64::from(b'f'));
    if digits | letters != HIGHS {
        return None;
    }
    // '0'-'9' are their low nibble, 'a'-'f' and 'A'-'F' theirs plus 9; then the 8 nibbles, one
    // a byte, are packed into 32 bits, pairs first.
    let nibbles = (x & (ONES * 0x0f)) + (letters >> 7) * 9;
    let pairs = (nibbles | (nibbles >> 4)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    Some((quads | (quads >> 16)) as u32)
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Iterates over the files of a newc archive, stopping at the trailer or at the first
/// malformed header.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries { archive, offset: 0 }
}

pub struct Entries<'a> {
    archive: &'a [u8],
    offset: usize,
}

impl<'a> Entries<'a> {
    /// The next entry, its name as the archive holds it (NUL dropped, not checked for UTF-8).
    fn next_raw(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let header = self.archive.get(self.offset..self.offset.checked_add(HEADER_SIZE)?)?;
        if &header[..6] != MAGIC {
            return None;
        }
        let file_size = hex_field(header, 6)?;
        let name_size = hex_field(header, 11)?;
        let name_start = self.offset + HEADER_SIZE;
        let name_end = name_start.checked_add(name_size)?;
        let name_bytes = self.archive.get(name_start..name_end)?;
        // The name is NUL-terminated; name_size counts the NUL.
        let (&0, name) = name_bytes.split_last()? else {
            return None;
        };
        let data_start = align4(name_end)?;
        let data_end = data_start.checked_add(file_size)?;
        let data = self.archive.get(data_start..data_end)?;
        if name == TRAILER.as_bytes() {
            return None;
        }
        self.offset = align4(data_end)?;
        Some((name, data))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    /// The next entry; the archive ends at its trailer, or at an entry that is malformed or
    /// whose name is not UTF-8.
    fn next(&mut self) -> Option<Entry<'a>> {
        let (name, data) = self.next_raw()?;
        Some(Entry { name: core::str::from_utf8(name).ok()?, data })
    }
}

/// The file called `name`: names are compared as bytes, so an entry whose name is not UTF-8
/// (which lde never writes) is passed over rather than ending the search (checking each name
/// cost every process start ~6 emulated instructions a byte).
pub fn find<'a>(archive: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut entries = entries(archive);
    while let Some((n, data)) = entries.next_raw() {
        if n == name.as_bytes() {
            return Some(data);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex8_reads_every_digit_and_refuses_every_other_byte() {
        // Each position, each byte value, against `u32::from_str_radix` (which also takes a
        // leading '+': not a digit here).
        for position in 0..8 {
            for b in 0..=255u8 {
                let mut field = *b"0123abCD";
                field[position] = b;
                let expected = core::str::from_utf8(&field)
                    .ok()
                    .filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|s| u32::from_str_radix(s, 16).ok());
                assert_eq!(hex8(field), expected, "{field:?}");
            }
        }
        assert_eq!(hex8(*b"FFFFffff"), Some(u32::MAX));
        assert_eq!(hex8(*b"00000000"), Some(0));
        assert_eq!(hex8(*b"0000006E"), Some(110));
    }

    /// Writes a newc archive the way the VMM does (tested against it in vmm/src/initrd.rs).
    fn archive(files: &[(&str, &[u8])], out: &mut [u8]) -> usize {
        let mut pos = 0;
        let mut put = |bytes: &[u8], pos: &mut usize| {
            out[*pos..*pos + bytes.len()].copy_from_slice(bytes);
            *pos += bytes.len();
        };
        let all = files.iter().copied().chain(core::iter::once((TRAILER, &[][..])));
        for (i, (name, data)) in all.enumerate() {
            let mut header = [b'0'; HEADER_SIZE];
            header[..6].copy_from_slice(MAGIC);
            let fields = [i + 1, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0];
            for (f, v) in fields.iter().enumerate() {
                for d in 0..8 {
                    let nibble = (v >> ((7 - d) * 4)) & 0xf;
                    header[6 + f * 8 + d] = b"0123456789ABCDEF"[nibble];
                }
            }
            put(&header, &mut pos);
            put(name.as_bytes(), &mut pos);
            put(&[0], &mut pos);
            while pos % 4 != 0 {
                put(&[0], &mut pos);
            }
            put(data, &mut pos);
            while pos % 4 != 0 {
                put(&[0], &mut pos);
            }
        }
        pos
    }

    #[test]
    fn lists_and_finds_files() {
        let mut buf = [0u8; 1024];
        let len = archive(&[("hello", b"HELLO"), ("counter", b"0123456789")], &mut buf);
        let names: [&str; 2] = {
            let mut it = entries(&buf[..len]);
            [it.next().unwrap().name, it.next().unwrap().name]
        };
        assert_eq!(names, ["hello", "counter"]);
        assert_eq!(entries(&buf[..len]).count(), 2);
        assert_eq!(find(&buf[..len], "counter"), Some(&b"0123456789"[..]));
        assert_eq!(find(&buf[..len], "missing"), None);
    }

    #[test]
    fn malformed_archives_end_the_listing_without_panicking() {
        let mut buf = [0u8; 1024];
        let len = archive(&[("hello", b"HELLO")], &mut buf);
        for cut in 0..len {
            let _ = entries(&buf[..cut]).count();
        }
        let mut bad = buf;
        bad[6 + 6 * 8] = b'Z'; // file size field
        assert_eq!(entries(&bad[..len]).count(), 0);
        let mut huge = buf;
        huge[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(entries(&huge[..len]).count(), 0);
        assert_eq!(entries(b"garbage").count(), 0);
    }
}
