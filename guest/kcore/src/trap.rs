//! Names of the x86 exception vectors, as the kernel prints them (`trap=#GP`), and of the
//! vectors lde's kernel uses for interrupts (timer 0x20, the other processors' timers 0x21,
//! serial 0x24, disks 0x28–0x2b, the masked PICs at 0x30, `int 0x80`, the IPIs 0xf0–0xf2,
//! spurious 0xff).

/// The mnemonic of an exception vector (`#GP`), or the name of an interrupt vector.
pub fn mnemonic(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        9 => "#CSO",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        28 => "#HV",
        29 => "#VC",
        30 => "#SX",
        15 | 22..=27 | 31 => "#RESERVED",
        0x20 => "TIMER",
        0x21 => "AP-TIMER",
        0x24 => "SERIAL",
        0x28..=0x2b => "DISK",
        0x30..=0x3f => "PIC",
        0x80 => "INT80",
        0xf0 => "IPI",
        0xf1 => "RESCHED",
        0xf2 => "SHOOTDOWN",
        0xff => "SPURIOUS",
        _ => "IRQ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_common_exceptions() {
        assert_eq!(mnemonic(6), "#UD");
        assert_eq!(mnemonic(13), "#GP");
        assert_eq!(mnemonic(14), "#PF");
        assert_eq!(mnemonic(15), "#RESERVED");
        assert_eq!(mnemonic(0x20), "TIMER");
        assert_eq!(mnemonic(0x21), "AP-TIMER");
        assert_eq!(mnemonic(0x22), "IRQ");
        assert_eq!(mnemonic(0xf1), "RESCHED");
        assert_eq!(mnemonic(0x80), "INT80");
    }
}
