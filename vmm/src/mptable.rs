//! The MP table (Intel MultiProcessor Specification 1.4) lde writes into guest memory, so that a
//! kernel learns its processors as on a PC: the floating pointer at
//! [`MP_FLOATING_ADDR`](lde_kcore::mptable::MP_FLOATING_ADDR) (the last KiB of base memory,
//! reserved in the memory map) and the configuration table after it: one processor entry per
//! vCPU (LAPIC id = vCPU id, vCPU 0 the bootstrap processor), the ISA bus, the I/O APIC, ISA
//! IRQs 0–15 on its inputs 0–15, ExtINT on LINT0 and NMI on LINT1. Firecracker's `mptable.rs`
//! takes the same route. `lde_kcore::mptable` reads it (and is tested against this writer).

use lde_kcore::mptable::{
    CPU_BOOTSTRAP, CPU_ENABLED, ENTRY_BUS, ENTRY_IOAPIC, ENTRY_IO_INTERRUPT, ENTRY_LOCAL_INTERRUPT, ENTRY_PROCESSOR,
    MP_CONFIG_ADDR, MP_FLOATING_ADDR,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The LAPICs' MMIO base.
const LAPIC_ADDR: u32 = 0xfee0_0000;
/// The I/O APIC's MMIO base and its version register's value under KVM.
const IOAPIC_ADDR: u32 = 0xfec0_0000;
const IOAPIC_VERSION: u8 = 0x11;
/// The LAPIC version KVM reports.
const LAPIC_VERSION: u8 = 0x14;
/// ISA IRQs routed one to one to I/O APIC inputs.
const ISA_IRQS: u8 = 16;
/// The end (exclusive) of the room the table may use: the legacy hole starts here.
const ROOM_END: u64 = 0xa_0000;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)))
}

/// The configuration table for `cpus` vCPUs.
pub fn config_table(cpus: u8) -> Vec<u8> {
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTSTRAP } else { 0 };
        let mut entry = [0u8; 20];
        entry[..4].copy_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&entry);
        count += 1;
    }
    let ioapic_id = cpus;
    entries.extend_from_slice(&[ENTRY_BUS, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let [a, b, c, d] = IOAPIC_ADDR.to_le_bytes();
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1, a, b, c, d]);
    count += 2;
    for irq in 0..ISA_IRQS {
        // Interrupt type 0 (INT), flags 0 (conforms to the bus), bus 0.
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // ExtINT to LINT0, NMI to LINT1, on every LAPIC (0xff).
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;
    let mut table = vec![0u8; 44];
    table[..4].copy_from_slice(b"PCMP");
    table[4..6].copy_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table[6] = 4;
    table[8..16].copy_from_slice(b"LDE     ");
    table[16..28].copy_from_slice(b"LDE VM      ");
    table[34..36].copy_from_slice(&count.to_le_bytes());
    table[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

/// The floating pointer to a configuration table at `config_addr`.
pub fn floating_pointer(config_addr: u32) -> [u8; 16] {
    let mut fp = [0u8; 16];
    fp[..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&config_addr.to_le_bytes());
    fp[8] = 1; // length in 16-byte units
    fp[9] = 4; // spec revision 1.4
    fp[10] = checksum(&fp);
    fp
}

/// Writes the table for `cpus` vCPUs into guest memory.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), vm_memory::GuestMemoryError> {
    let table = config_table(cpus);
    debug_assert!(MP_CONFIG_ADDR + table.len() as u64 <= ROOM_END);
    mem.write_slice(&floating_pointer(MP_CONFIG_ADDR as u32), GuestAddress(MP_FLOATING_ADDR))?;
    mem.write_slice(&table, GuestAddress(MP_CONFIG_ADDR))
}

// Eight vCPUs' table fits below the legacy hole.
const _: () = assert!(MP_CONFIG_ADDR + 44 + 20 * 8 + 16 + 8 * 16 + 16 <= ROOM_END);

#[cfg(test)]
mod tests {
    use super::*;
    use lde_kcore::mptable::{find_floating, parse_config};

    #[test]
    fn the_kernels_reader_finds_every_vcpu_and_the_ioapic() {
        for cpus in 1..=8u8 {
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
            write(&mem, cpus).unwrap();
            let mut area = vec![0u8; 1024];
            mem.read_slice(&mut area, GuestAddress(MP_FLOATING_ADDR)).unwrap();
            let config = find_floating(&area).unwrap();
            assert_eq!(u64::from(config), MP_CONFIG_ADDR);
            let mut table = vec![0u8; 512];
            mem.read_slice(&mut table, GuestAddress(MP_CONFIG_ADDR)).unwrap();
            let p = parse_config(&table).unwrap();
            assert_eq!(p.count, usize::from(cpus));
            assert_eq!(&p.apic_ids[..p.count], &(0..cpus).collect::<Vec<_>>()[..]);
            assert_eq!((p.bootstrap, p.lapic_addr, p.ioapic_addr), (0, LAPIC_ADDR, Some(IOAPIC_ADDR)));
        }
    }
}
