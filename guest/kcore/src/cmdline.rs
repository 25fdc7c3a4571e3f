//! The kernel command line: space-separated `key=value` words (and bare `flag` words).
//!
//! The kernel reads its line once at boot, and where ring 0 is emulated every byte of that scan
//! is counted: `str::split_ascii_whitespace` and `split_once('=')` cost ~7.5 emulated
//! instructions a byte of lde's ~190-byte line. [`words`] looks at 8 bytes at a time instead
//! (~1.5 a byte): a word's end and its `=` are the lowest flagged bytes of two SWAR masks.

/// The `(key, value)` pairs of a command line; a bare word has an empty value. Words are split
/// at ASCII whitespace (space, tab, LF, FF, CR) exactly as `str::split_ascii_whitespace` splits
/// them, and a word at its first `=`.
pub fn words(cmdline: &str) -> Words<'_> {
    Words { rest: cmdline }
}

/// The value of the last `key=value` word for `key`, as later words override earlier ones.
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    words(cmdline).filter(|(k, _)| *k == key).map(|(_, v)| v).last()
}

/// The iterator of [`words`].
pub struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    /// What follows the last word returned (all of the line before the first).
    pub fn rest(&self) -> &'a str {
        self.rest
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = (&'a str, &'a str);

    // Inline: a call per word cost the kernel's boot ~20 emulated instructions a word more.
    #[inline(always)]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let line = self.rest;
        let start = line.bytes().position(|b| !is_space(b))?;
        let tail = &line.as_bytes()[start..];
        let end = start + find(tail, below_0x21, is_space);
        // The first `=` of what follows: past the word's end, the word has none.
        let eq = start + find(tail, zero_bytes_of_eq, |b| b == b'=');
        // SAFETY: (each `get_unchecked`) `start < end <= line.len()` and `start <= eq`; each
        // index is `line.len()` or that of an ASCII byte (whitespace, `=`, or the one after
        // `=`, which starts a character), so every slice is in bounds and on character
        // boundaries (the checked slices cost ~35 emulated instructions a word).
        unsafe {
            self.rest = line.get_unchecked(end..);
            Some(if eq < end {
                (line.get_unchecked(start..eq), line.get_unchecked(eq + 1..end))
            } else {
                (line.get_unchecked(start..end), "")
            })
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit set) every byte of `x` below 0x21, which includes all ASCII whitespace. A
/// flag may also be set above a flagged byte (a borrow), never below one: the lowest flag is
/// exact, and every true one is set.
fn below_0x21(x: u64) -> u64 {
    x.wrapping_sub(ONES * 0x21) & !x & HIGHS
}

/// Flags every `=` byte of `x`, with [`below_0x21`]'s guarantee (a zero byte of `x ^ "===…"`).
fn zero_bytes_of_eq(x: u64) -> u64 {
    let y = x ^ (ONES * u64::from(b'='));
    y.wrapping_sub(ONES) & !y & HIGHS
}

/// The index of the first byte of `bytes` for which `hit` holds, or `bytes.len()`. `mask` flags
/// in 8 bytes (little-endian) a superset of the hits, exact up to the first hit; each flag is
/// checked with `hit`, so a flag that is no hit (a control byte, a borrow) costs a step only.
fn find(bytes: &[u8], mask: fn(u64) -> u64, hit: fn(u8) -> bool) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut flags = mask(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        while flags != 0 {
            let i = flags.trailing_zeros() as usize / 8;
            if hit(chunk[i]) {
                return base + i;
            }
            flags &= flags - 1;
        }
        base += 8;
    }
    let rest = chunks.remainder();
    base + rest.iter().position(|&b| hit(b)).unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// What `words` must equal: the obvious definition.
    fn reference(line: &str) -> Vec<(&str, &str)> {
        line.split_ascii_whitespace().map(|w| w.split_once('=').unwrap_or((w, ""))).collect()
    }

    #[test]
    fn finds_values_and_lets_later_words_win() {
        let line = "  lde.test=panic quiet lde.hz=100 lde.test=triple-fault ";
        assert_eq!(value(line, "lde.test"), Some("triple-fault"));
        assert_eq!(value(line, "lde.hz"), Some("100"));
        assert_eq!(value(line, "quiet"), Some(""));
        assert_eq!(value(line, "missing"), None);
        assert_eq!(value("", "lde.test"), None);
    }

    #[test]
    fn rest_is_what_follows_the_last_word() {
        let mut w = words(" a=1  b\tc=3 ");
        assert_eq!(w.rest(), " a=1  b\tc=3 ");
        assert_eq!(w.next(), Some(("a", "1")));
        assert_eq!(w.rest(), "  b\tc=3 ");
        assert_eq!(w.next(), Some(("b", "")));
        assert_eq!(w.next(), Some(("c", "3")));
        assert_eq!(w.rest(), " ");
        assert_eq!(w.next(), None);
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(value("a=b=c", "a"), Some("b=c"));
    }

    #[test]
    fn splits_as_split_ascii_whitespace_does() {
        let lines = [
            "",
            " ",
            "a",
            "=",
            "a=",
            "=b",
            "lde.run=hello lde.hz=50 lde.timer=periodic lde.slice=1 lde.tsc_khz=2596124",
            "flag lde.run=yes\tlde.run='counter 5'\r\nx=1\x0cy=2",
            // Control bytes below 0x21 that are no whitespace are part of a word (the masks
            // flag them; the check rejects them), and a borrow's flag above them too.
            "a\x01b=c\x00d \x0b\x1f=\x7f ",
            "\x01\x01\x01\x01\x01\x01\x01 x",
            "éé=ü ünïcødé=ﬁ words",
            "0123456789abcdef0123456789abcdef=0123456789abcdef 01234567=",
        ];
        for line in lines {
            assert_eq!(words(line).collect::<Vec<_>>(), reference(line), "{line:?}");
        }
    }

    #[test]
    fn random_lines_over_a_hostile_alphabet_match_the_reference() {
        // Separators, '=', a letter, control bytes that are no whitespace, 0x21 and '>' (one
        // above the masks' constants, where a borrow sets a false flag), and a 2-byte character;
        // lines up to 40 bytes, so that words and '=' fall on every side of the 8-byte chunks.
        let alphabet = [" ", "\t", "\n", "=", "a", "\x01", "\x00", "\x0b", "!", ">", "é"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut line = std::string::String::new();
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            line.clear();
            let mut r = seed;
            for _ in 0..(r % 41) {
                r = r.rotate_right(5).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
                line.push_str(alphabet[(r >> 59) as usize % alphabet.len()]);
            }
            assert_eq!(words(&line).collect::<Vec<_>>(), reference(&line), "{line:?}");
        }
    }
}
