//! Disassembles the kernel and fails on any instruction that kills a PVM guest when executed in
//! ring 0 (KVM_EXIT_INTERNAL_ERROR), or hangs or faults it there. See the README's "Host kinds".

use std::process::Command;

/// Mnemonics (as objdump prints them) that must never appear in kernel code.
const FATAL_IN_RING0: &[&str] = &[
    "int3",
    "int",
    "rdtscp",
    "stac",
    "clac",
    "popcnt",
    "andn",
    "pdep",
    "pext",
    "cmpxchg16b",
    "xgetbv",
    "xsave",
    "xsaveopt",
    "xsavec",
    "xsaves",
    "xrstor",
    "xrstors",
    // The REX.W forms, which objdump names apart (unlike fxsave64, which PVM runs).
    "xsave64",
    "xsaveopt64",
    "xsavec64",
    "xsaves64",
    "xrstor64",
    "xrstors64",
    "invpcid",
    "lar",
    "verr",
    "verw",
    "monitor",
    "mwait",
    "movbe",
    "rdpid",
    "rdpmc",
    "vmcall",
    "vmmcall",
];

fn is_forbidden(mnemonic: &str) -> bool {
    FATAL_IN_RING0.contains(&mnemonic)
        // x87 (f…), SSE and AVX (anything on xmm/ymm/zmm registers is caught below).
        || (mnemonic.starts_with('f') && !matches!(mnemonic, "fxsave" | "fxsave64" | "fxrstor" | "fxrstor64"))
}

#[test]
fn kernel_has_no_instruction_fatal_in_ring0() {
    let dir = std::env::temp_dir().join(format!("lde-insns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kernel.elf");
    std::fs::write(&path, lde::guest::KERNEL).unwrap();
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "att"])
        .arg(&path)
        .output()
        .expect("objdump (binutils) is needed for this test");
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();

    let (count, bad) = scan(&text);
    assert!(count > 1000, "disassembly looks empty ({count} instructions)");
    assert!(bad.is_empty(), "instructions fatal in ring 0 on PVM:\n{}", bad.join("\n"));
}

/// Counts the instructions of an objdump disassembly and lists the forbidden ones.
fn scan(text: &str) -> (usize, Vec<String>) {
    // (address, mnemonic, whole instruction) of every instruction line, e.g. "  100010:\tmov %ebx,%edi".
    let insns: Vec<(u64, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let (addr, insn) = line.split_once(":\t")?;
            let addr = u64::from_str_radix(addr.trim(), 16).ok()?;
            let insn = insn.trim();
            let mnemonic = insn.split_whitespace().next()?;
            Some((addr, mnemonic, insn))
        })
        .collect();
    let count = insns.len();

    let mut bad = Vec::new();
    let mut i = 0;
    while i < insns.len() {
        let (addr, mnemonic, insn) = insns[i];
        if mnemonic == "int3" {
            // The linker pads between functions with int3 up to the next 16-byte boundary; such
            // a run is never executed. Any other int3 is code.
            let run = insns[i..].iter().take_while(|(_, m, _)| *m == "int3").count();
            let end = insns[i + run - 1].0 + 1;
            if !(end % 16 == 0 && run < 16) {
                bad.push(format!("{addr:x}: int3 (x{run})"));
            }
            i += run;
            continue;
        }
        if is_forbidden(mnemonic) || insn.contains("%xmm") || insn.contains("%ymm") || insn.contains("%zmm") {
            bad.push(format!("{addr:x}: {insn}"));
        }
        i += 1;
    }
    (count, bad)
}

#[test]
fn scan_tells_padding_from_code() {
    let text = "\
  100064:\tud2
  100066:\tint3
  100067:\tint3
  100068:\tint3
  100069:\tint3
  10006a:\tint3
  10006b:\tint3
  10006c:\tint3
  10006d:\tint3
  10006e:\tint3
  10006f:\tint3
  100070:\tpush   $0x0
  100072:\tint3
  100073:\tmovq   %rax,%xmm0
  100078:\tpopcnt %rax,%rbx
  10007d:\tfld    (%rax)
  10007f:\tfxsave64 (%rax)
  100083:\tfxrstor64 (%rax)
  100087:\txsave64 (%rax)
  10008b:\txrstor64 (%rax)
  10008f:\txsaveopt64 (%rax)
";
    let (count, bad) = scan(text);
    assert_eq!(count, 21);
    assert_eq!(
        bad,
        [
            "100072: int3 (x1)",
            "100073: movq   %rax,%xmm0",
            "100078: popcnt %rax,%rbx",
            "10007d: fld    (%rax)",
            "100087: xsave64 (%rax)",
            "10008b: xrstor64 (%rax)",
            "10008f: xsaveopt64 (%rax)",
        ]
    );
}
