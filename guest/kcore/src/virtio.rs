//! The parts of the virtio block driver that touch no hardware: reading a device's
//! `virtio_mmio.device=` word, laying out the one queue in one page, and cutting a process's
//! buffer into the physically contiguous pieces a request's data descriptors name.

/// A virtio-mmio device as the command line announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

/// Reads the value of a `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` word, as Linux does:
/// size in bytes with an optional K, M or G suffix, base in hex (`0x…`) or decimal, irq in
/// decimal. `None` for anything else, including a size of 0.
pub fn parse_mmio_device(value: &str) -> Option<MmioDevice> {
    let (size, rest) = value.split_once('@')?;
    let (base, rest) = rest.split_once(':')?;
    let irq = rest.split(':').next()?;
    let (digits, unit) = match size.as_bytes().last()? {
        b'K' | b'k' => (&size[..size.len() - 1], 1 << 10),
        b'M' | b'm' => (&size[..size.len() - 1], 1 << 20),
        b'G' | b'g' => (&size[..size.len() - 1], 1 << 30),
        _ => (size, 1),
    };
    let size = digits.parse::<u64>().ok()?.checked_mul(unit).filter(|&s| s > 0)?;
    let base = match base.strip_prefix("0x").or_else(|| base.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => base.parse().ok()?,
    };
    base.checked_add(size)?;
    Some(MmioDevice { base, size, irq: irq.parse().ok()? })
}

/// Where the queue's parts lie in the one page the driver gives it, for `QUEUE_LEN` descriptors:
/// the descriptor table, the available ring, the used ring, then the request header and the
/// status byte of the one request in flight.
pub mod layout {
    /// Descriptors the driver uses (the device offers more; the driver sets this many).
    pub const QUEUE_LEN: u16 = 8;
    pub const DESC_OFFSET: u64 = 0;
    pub const AVAIL_OFFSET: u64 = DESC_OFFSET + 16 * QUEUE_LEN as u64;
    /// The used ring, 4-byte aligned.
    pub const USED_OFFSET: u64 = (AVAIL_OFFSET + 6 + 2 * QUEUE_LEN as u64 + 3) & !3;
    pub const HEADER_OFFSET: u64 = (USED_OFFSET + 6 + 8 * QUEUE_LEN as u64 + 15) & !15;
    pub const STATUS_OFFSET: u64 = HEADER_OFFSET + 16;
    /// Data descriptors a request can have: all but the header's and the status's.
    pub const MAX_SEGMENTS: usize = QUEUE_LEN as usize - 2;
    const _: () = assert!(STATUS_OFFSET < 4096);
}

/// Most bytes one request moves: every data descriptor but one a whole page (a buffer that
/// does not start on a page boundary touches one page more than its length fills).
pub const MAX_REQUEST_BYTES: u64 = (layout::MAX_SEGMENTS as u64 - 1) * 4096;

/// One physically contiguous piece of a buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub phys: u64,
    pub len: u32,
}

/// Cuts `[vaddr, vaddr + len)` at page boundaries and translates each piece with `translate`
/// (virtual page → physical page), merging pieces that are physically adjacent. `None` if a
/// page does not translate or the buffer needs more than [`layout::MAX_SEGMENTS`] pieces.
pub fn segments(
    vaddr: u64,
    len: u64,
    mut translate: impl FnMut(u64) -> Option<u64>,
) -> Option<([Segment; layout::MAX_SEGMENTS], usize)> {
    let mut out = [Segment::default(); layout::MAX_SEGMENTS];
    let mut count: usize = 0;
    let mut at = vaddr;
    let end = vaddr.checked_add(len)?;
    while at < end {
        let page = at & !0xfff;
        let piece = (page + 0x1000).min(end) - at;
        let phys = translate(page)? + (at - page);
        match count.checked_sub(1).map(|last| &mut out[last]) {
            Some(last) if last.phys + u64::from(last.len) == phys => last.len += piece as u32,
            _ => {
                *out.get_mut(count)? = Segment { phys, len: piece as u32 };
                count += 1;
            }
        }
        at += piece;
    }
    Some((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lde_and_qemu_device_words() {
        let lde = MmioDevice { base: 0xd000_0000, size: 4096, irq: 5 };
        assert_eq!(parse_mmio_device("4K@0xd0000000:5"), Some(lde));
        let qemu = MmioDevice { base: 0xfeb0_0e00, size: 512, irq: 12 };
        assert_eq!(parse_mmio_device("512@0xfeb00e00:12"), Some(qemu));
        assert_eq!(parse_mmio_device("1M@4096:7:3").map(|d| (d.size, d.base, d.irq)), Some((1 << 20, 4096, 7)));
        for bad in [
            "",
            "4K",
            "4K@0xd0000000",
            "0@0x1000:5",
            "4K@0xzz:5",
            "4K@0x1000:x",
            "4X@0x1000:5",
            "1G@0xffffffffffffffff:5",
        ] {
            assert_eq!(parse_mmio_device(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cuts_a_buffer_at_pages_and_merges_adjacent_frames() {
        // Virtual page n maps to physical 0x10_0000 + n * 0x1000, except page 2, far away.
        let map = |page: u64| Some(if page == 0x2000 { 0x90_0000 } else { 0x10_0000 + page });
        let (segs, n) = segments(0x0800, 0x2000, map).unwrap();
        assert_eq!(&segs[..n], &[Segment { phys: 0x10_0800, len: 0x1800 }, Segment { phys: 0x90_0000, len: 0x800 }]);
        assert_eq!(segments(0x1000, 0, map).unwrap().1, 0);
        assert!(segments(0x1000, 0x1000, |_| None).is_none());
        assert!(segments(u64::MAX - 10, 100, map).is_none());
    }

    #[test]
    fn the_largest_request_fits_its_descriptors_from_any_start() {
        // Every page far from the last: no merging, the worst case.
        let scattered = |page: u64| Some(page * 2);
        assert!(segments(0x1fff, MAX_REQUEST_BYTES, scattered).is_some());
        assert!(segments(0x1fff, MAX_REQUEST_BYTES + 4096, scattered).is_none());
    }
}
