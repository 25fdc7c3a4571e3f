//! The MP table (Intel MultiProcessor Specification 1.4), by which the kernel learns its
//! processors: a floating pointer ("_MP_", 16 bytes, on a 16-byte boundary in the last KiB of
//! base memory or the BIOS area) names a configuration table ("PCMP") of entries, one per
//! processor, bus, I/O APIC and interrupt. lde writes one ([`MP_FLOATING_ADDR`]); this file finds
//! and reads one, trusting nothing in it: checksums, lengths and counts are checked, and at most
//! [`MAX_CPUS`] processors are kept.

/// Where lde puts the floating pointer: the last KiB of base memory, as the spec allows.
pub const MP_FLOATING_ADDR: u64 = 0x9_fc00;
/// Where lde puts the configuration table, right after the floating pointer.
pub const MP_CONFIG_ADDR: u64 = MP_FLOATING_ADDR + 16;
/// Most processors kept.
pub const MAX_CPUS: usize = 8;
/// Entry types and their sizes.
pub const ENTRY_PROCESSOR: u8 = 0;
pub const ENTRY_BUS: u8 = 1;
pub const ENTRY_IOAPIC: u8 = 2;
pub const ENTRY_IO_INTERRUPT: u8 = 3;
pub const ENTRY_LOCAL_INTERRUPT: u8 = 4;
/// A processor entry's flags: enabled, the bootstrap processor.
pub const CPU_ENABLED: u8 = 1;
pub const CPU_BOOTSTRAP: u8 = 2;

/// What the kernel needs from the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Processors {
    /// LAPIC ids of the enabled processors, in table order; `count` of them are valid.
    pub apic_ids: [u8; MAX_CPUS],
    pub count: usize,
    /// The bootstrap processor's LAPIC id.
    pub bootstrap: u8,
    /// Where the LAPICs are (physical).
    pub lapic_addr: u32,
    /// Where the first I/O APIC is (physical), if the table names one.
    pub ioapic_addr: Option<u32>,
}

/// Why a table was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpError {
    NoFloatingPointer,
    BadChecksum,
    BadConfigTable,
    NoProcessor,
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// The address of the configuration table named by the first valid floating pointer in
/// `area` (bytes of guest memory that start at a 16-byte boundary).
pub fn find_floating(area: &[u8]) -> Result<u32, MpError> {
    let mut bad_sum = false;
    for candidate in area.chunks_exact(16) {
        if &candidate[..4] != b"_MP_" {
            continue;
        }
        if sum(candidate) != 0 || candidate[8] != 1 {
            bad_sum = true;
            continue;
        }
        let addr = u32::from_le_bytes([candidate[4], candidate[5], candidate[6], candidate[7]]);
        if addr != 0 {
            return Ok(addr);
        }
    }
    Err(if bad_sum { MpError::BadChecksum } else { MpError::NoFloatingPointer })
}

/// Reads the configuration table at the start of `table` (which may run on past its end).
pub fn parse_config(table: &[u8]) -> Result<Processors, MpError> {
    let header = table.get(..44).ok_or(MpError::BadConfigTable)?;
    if &header[..4] != b"PCMP" {
        return Err(MpError::BadConfigTable);
    }
    let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let body = table.get(..length).filter(|_| length >= 44).ok_or(MpError::BadConfigTable)?;
    if sum(body) != 0 {
        return Err(MpError::BadChecksum);
    }
    let count = u16::from_le_bytes([header[34], header[35]]);
    let lapic_addr = u32::from_le_bytes([header[36], header[37], header[38], header[39]]);
    let mut found = Processors { lapic_addr, ..Processors::default() };
    let mut at = 44;
    for _ in 0..count {
        let kind = *body.get(at).ok_or(MpError::BadConfigTable)?;
        let size = if kind == ENTRY_PROCESSOR { 20 } else { 8 };
        let entry = body.get(at..at + size).ok_or(MpError::BadConfigTable)?;
        match kind {
            ENTRY_PROCESSOR if entry[3] & CPU_ENABLED != 0 && found.count < MAX_CPUS => {
                found.apic_ids[found.count] = entry[1];
                found.count += 1;
                if entry[3] & CPU_BOOTSTRAP != 0 {
                    found.bootstrap = entry[1];
                }
            }
            ENTRY_IOAPIC if found.ioapic_addr.is_none() && entry[3] & 1 != 0 => {
                found.ioapic_addr = Some(u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]));
            }
            ENTRY_PROCESSOR | ENTRY_BUS | ENTRY_IOAPIC | ENTRY_IO_INTERRUPT | ENTRY_LOCAL_INTERRUPT => {}
            _ => return Err(MpError::BadConfigTable),
        }
        at += size;
    }
    if found.count == 0 {
        return Err(MpError::NoProcessor);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `cpus` processors and an I/O APIC, as an MP table writer lays it out.
    fn table(cpus: u8) -> [u8; 512] {
        let mut t = [0u8; 512];
        t[..4].copy_from_slice(b"PCMP");
        t[6] = 4;
        t[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        let mut at = 44;
        for id in 0..cpus {
            t[at] = ENTRY_PROCESSOR;
            t[at + 1] = id;
            t[at + 3] = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
            at += 20;
        }
        t[at..at + 8].copy_from_slice(&[ENTRY_IOAPIC, cpus, 0x11, 1, 0x00, 0x00, 0xc0, 0xfe]);
        at += 8;
        t[34..36].copy_from_slice(&(u16::from(cpus) + 1).to_le_bytes());
        t[4..6].copy_from_slice(&(at as u16).to_le_bytes());
        t[7] = 0u8.wrapping_sub(sum(&t[..at]));
        t
    }

    #[test]
    fn reads_processors_and_the_ioapic() {
        let p = parse_config(&table(3)).unwrap();
        assert_eq!((p.count, &p.apic_ids[..3], p.bootstrap), (3, &[0, 1, 2][..], 0));
        assert_eq!((p.lapic_addr, p.ioapic_addr), (0xfee0_0000, Some(0xfec0_0000)));
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let mut t = table(2);
        t[50] ^= 1;
        assert_eq!(parse_config(&t), Err(MpError::BadChecksum));
        let mut t = table(2);
        t[34] = 200; // more entries than the table holds
        t[7] = t[7].wrapping_sub(200 - 3);
        assert_eq!(parse_config(&t), Err(MpError::BadConfigTable));
        assert_eq!(parse_config(&table(2)[..40]), Err(MpError::BadConfigTable));
        assert_eq!(parse_config(&table(0)), Err(MpError::NoProcessor));
    }

    #[test]
    fn keeps_at_most_max_cpus() {
        let p = parse_config(&table(12)).unwrap();
        assert_eq!(p.count, MAX_CPUS);
    }

    #[test]
    fn finds_a_floating_pointer_with_a_good_checksum() {
        let mut area = [0u8; 64];
        let mut fp = [0u8; 16];
        fp[..4].copy_from_slice(b"_MP_");
        fp[4..8].copy_from_slice(&0x9fc10u32.to_le_bytes());
        fp[8] = 1;
        fp[9] = 4;
        fp[10] = 0u8.wrapping_sub(sum(&fp));
        area[32..48].copy_from_slice(&fp);
        assert_eq!(find_floating(&area), Ok(0x9fc10));
        area[40] ^= 0xff;
        assert_eq!(find_floating(&area), Err(MpError::BadChecksum));
        assert_eq!(find_floating(&[0; 64]), Err(MpError::NoFloatingPointer));
    }
}
