//! Decimal numbers for the kernel's lines, written in place, two digits a step (where ring 0
//! is emulated, `core::fmt` and a digit-a-step loop cost each boot a few hundred instructions).

use core::mem::MaybeUninit;

/// `"00" "01" … "99"`: two decimal digits a lookup.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// How many digits `n` takes in decimal, or `width` if that is more.
pub fn len(n: u64, width: usize) -> usize {
    let mut count = 1;
    let mut power = 10u64;
    // 10^19 is the largest power of ten a u64 holds: `count` stops at 20 before it wraps.
    while count < 20 && n >= power {
        count += 1;
        power = power.wrapping_mul(10);
    }
    count.max(width)
}

/// Writes the last `out.len()` decimal digits of `n` into all of `out` (zeros in front where
/// `n` has fewer), right to left: with `out.len() == len(n, width)`, `n` at least `width`
/// digits wide.
pub fn write(n: u64, out: &mut [MaybeUninit<u8>]) {
    let mut n = n;
    let mut pairs = out.rchunks_exact_mut(2);
    for slot in &mut pairs {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        slot[0].write(DIGIT_PAIRS[pair]);
        slot[1].write(DIGIT_PAIRS[pair + 1]);
    }
    if let [first] = pairs.into_remainder() {
        first.write(b'0' + (n % 10) as u8);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::vec::Vec;

    use super::*;

    fn formatted(n: u64, width: usize) -> Vec<u8> {
        let mut out = std::vec![MaybeUninit::uninit(); len(n, width)];
        write(n, &mut out);
        // SAFETY: `write` wrote every element of `out`.
        out.iter().map(|b| unsafe { b.assume_init() }).collect()
    }

    #[test]
    fn matches_format_at_every_length_and_width() {
        let mut samples = std::vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 2_596_124, u64::MAX];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            samples.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        for n in samples {
            for width in 0..=22 {
                let expected = format!("{n:0width$}");
                assert_eq!(std::str::from_utf8(&formatted(n, width)).unwrap(), expected, "{n} width {width}");
            }
        }
    }
}
