//! The bins of `lde bench`'s histograms, shared by the guest's `bench` program (which bins its
//! samples) and lde (which bins its host samples and draws them): log-linear, eight bins per
//! power of two (each about 12 % wide), exact below 8 cycles, as HDR histograms do.

/// Sub-bins per power of two, as a power of two.
const SUB_BITS: u32 = 3;

/// The lower bound (in cycles) of the bin that holds `cycles`.
pub const fn bin_floor(cycles: u64) -> u64 {
    if cycles < (1 << SUB_BITS) {
        return cycles;
    }
    let shift = 63 - cycles.leading_zeros() - SUB_BITS;
    (cycles >> shift) << shift
}

/// The lower bound of the bin after the one whose lower bound is `floor` (`u64::MAX` for the
/// last bin: a floor read from a guest's line may be anything).
pub const fn bin_ceiling(floor: u64) -> u64 {
    if floor < (1 << SUB_BITS) {
        return floor + 1;
    }
    let shift = 63 - floor.leading_zeros() - SUB_BITS;
    floor.saturating_add(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_log_linear() {
        assert_eq!(
            (bin_floor(0), bin_floor(7), bin_floor(8), bin_floor(15), bin_floor(16), bin_floor(17)),
            (0, 7, 8, 15, 16, 16)
        );
        assert_eq!(bin_floor(335_902), 327_680);
        assert_eq!(bin_ceiling(327_680), 360_448);
        for v in [9u64, 100, 1_000, 123_456, 1 << 40] {
            let floor = bin_floor(v);
            assert!(floor <= v && v < bin_ceiling(floor), "{v}");
            assert!((bin_ceiling(floor) - floor) as f64 / floor as f64 <= 0.125, "{v}");
        }
        assert_eq!(bin_ceiling(bin_floor(u64::MAX)), u64::MAX);
        assert_eq!(bin_ceiling(u64::MAX), u64::MAX);
    }
}
