//! The processors as ACPI lists them, for firmware that gives no MP table of them (QEMU's
//! SeaBIOS with a direct kernel boot lists only the first processor in its MP table): the RSDP
//! ("RSD PTR ", on a 16-byte boundary in the BIOS area) names the RSDT, whose entries name the
//! tables; the MADT ("APIC") lists one local APIC per processor and the I/O APICs. Nothing in
//! them is trusted: signatures, checksums and lengths are checked, and at most
//! [`MAX_CPUS`](crate::mptable::MAX_CPUS) processors are kept.

use crate::mptable::{MpError, Processors, MAX_CPUS};

/// Longest table read (a MADT of 256 processors is under 3 KiB).
pub const TABLE_MAX: usize = 64 * 1024;
/// A table header's length.
pub const HEADER: usize = 36;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The RSDT's address from the first valid RSDP in `area` (bytes that start at a 16-byte
/// boundary).
pub fn find_rsdt(area: &[u8]) -> Result<u32, MpError> {
    let mut bad_sum = false;
    for at in (0..area.len().saturating_sub(19)).step_by(16) {
        let rsdp = &area[at..at + 20];
        if &rsdp[..8] != b"RSD PTR " {
            continue;
        }
        if sum(rsdp) != 0 {
            bad_sum = true;
            continue;
        }
        match u32_at(rsdp, 16) {
            Some(rsdt) if rsdt != 0 => return Ok(rsdt),
            _ => {}
        }
    }
    Err(if bad_sum { MpError::BadChecksum } else { MpError::NoFloatingPointer })
}

/// A table's length from its header, if `header` is one of `signature` (the first
/// [`HEADER`] bytes of it) and the length is sane.
pub fn table_length(header: &[u8], signature: &[u8; 4]) -> Option<usize> {
    if header.len() < HEADER || &header[..4] != signature {
        return None;
    }
    let length = u32_at(header, 4)? as usize;
    (HEADER..=TABLE_MAX).contains(&length).then_some(length)
}

/// The table addresses a whole RSDT (its checksum checked) lists.
pub fn rsdt_entries(rsdt: &[u8]) -> Result<impl Iterator<Item = u32> + '_, MpError> {
    let length = table_length(rsdt, b"RSDT").ok_or(MpError::BadConfigTable)?;
    let table = rsdt.get(..length).ok_or(MpError::BadConfigTable)?;
    if sum(table) != 0 {
        return Err(MpError::BadChecksum);
    }
    Ok(table[HEADER..].chunks_exact(4).filter_map(|e| u32_at(e, 0)))
}

/// The processors and the first I/O APIC of a whole MADT (its checksum checked). The MADT
/// does not mark the bootstrap processor: `bootstrap` is the reader's own LAPIC id.
pub fn parse_madt(madt: &[u8], bootstrap: u8) -> Result<Processors, MpError> {
    let length = table_length(madt, b"APIC").ok_or(MpError::BadConfigTable)?;
    let table = madt.get(..length).filter(|_| length >= HEADER + 8).ok_or(MpError::BadConfigTable)?;
    if sum(table) != 0 {
        return Err(MpError::BadChecksum);
    }
    let lapic_addr = u32_at(table, HEADER).ok_or(MpError::BadConfigTable)?;
    let mut found = Processors { lapic_addr, bootstrap, ..Processors::default() };
    let mut at = HEADER + 8;
    while at + 2 <= table.len() {
        let (kind, len) = (table[at], usize::from(table[at + 1]));
        let entry = table.get(at..at + len).filter(|_| len >= 2).ok_or(MpError::BadConfigTable)?;
        match kind {
            // Processor local APIC: ACPI id, APIC id, flags (bit 0: enabled).
            0 if len >= 8 && entry[4] & 1 != 0 && found.count < MAX_CPUS => {
                found.apic_ids[found.count] = entry[3];
                found.count += 1;
            }
            // I/O APIC: id, reserved, address.
            1 if len >= 12 && found.ioapic_addr.is_none() => found.ioapic_addr = u32_at(entry, 4),
            _ => {}
        }
        at += len;
    }
    if found.count == 0 {
        return Err(MpError::NoProcessor);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::from(&signature[..]);
        t.extend_from_slice(&((HEADER + body.len()) as u32).to_le_bytes());
        t.resize(HEADER, 0);
        t.extend_from_slice(body);
        t[9] = 0u8.wrapping_sub(sum(&t));
        t
    }

    fn madt(cpus: &[(u8, bool)]) -> Vec<u8> {
        let mut body = Vec::from(&0xfee0_0000u32.to_le_bytes()[..]);
        body.extend_from_slice(&1u32.to_le_bytes());
        for (i, &(id, enabled)) in cpus.iter().enumerate() {
            body.extend_from_slice(&[0, 8, i as u8, id, u8::from(enabled), 0, 0, 0]);
        }
        body.extend_from_slice(&[1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
        table(b"APIC", &body)
    }

    #[test]
    fn reads_a_madt_as_qemu_writes_one() {
        let p = parse_madt(&madt(&[(0, true), (1, true), (2, false), (3, true)]), 0).unwrap();
        assert_eq!((p.count, &p.apic_ids[..3]), (3, &[0, 1, 3][..]));
        assert_eq!((p.lapic_addr, p.ioapic_addr, p.bootstrap), (0xfee0_0000, Some(0xfec0_0000), 0));
    }

    #[test]
    fn refuses_bad_sums_lengths_and_entries() {
        let mut bad = madt(&[(0, true)]);
        bad[40] ^= 1;
        assert_eq!(parse_madt(&bad, 0), Err(MpError::BadChecksum));
        let mut short = madt(&[(0, true)]);
        short[HEADER + 9] = 0; // an entry of length 0
        short[9] = short[9].wrapping_add(8);
        assert_eq!(parse_madt(&short, 0), Err(MpError::BadConfigTable));
        assert_eq!(parse_madt(&madt(&[(0, false)]), 0), Err(MpError::NoProcessor));
        assert_eq!(parse_madt(&table(b"FACP", &[0; 8]), 0), Err(MpError::BadConfigTable));
    }

    #[test]
    fn finds_the_rsdt_and_its_entries() {
        let mut rsdp = Vec::from(&b"RSD PTR "[..]);
        rsdp.extend_from_slice(&[0, b'B', b'O', b'C', b'H', b'S', 0]);
        rsdp.push(0);
        rsdp.extend_from_slice(&0x7fe_1234u32.to_le_bytes());
        rsdp[8] = 0u8.wrapping_sub(sum(&rsdp));
        let mut area = std::vec![0u8; 64];
        area[32..52].copy_from_slice(&rsdp);
        assert_eq!(find_rsdt(&area), Ok(0x7fe_1234));
        area[40] ^= 1;
        assert_eq!(find_rsdt(&area), Err(MpError::BadChecksum));
        let rsdt = table(b"RSDT", &[0x10, 0, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(rsdt_entries(&rsdt).unwrap().collect::<Vec<_>>(), [0x10, 0x20]);
    }
}
