//! Relinks the programs when the linker script changes (it is passed in .cargo/config.toml),
//! and writes `chaos.bin`: the random bytes `chaos` executes (fixed seed, so every build and
//! every run of `chaos N SEED` executes the same code).
fn main() {
    println!("cargo:rerun-if-changed=user.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let mut state: u64 = 0x6c64_6563_6861_6f73; // "ldechaos"
    let bytes: Vec<u8> = (0..CHAOS_TEXT_SIZE)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect();
    std::fs::write(out.join("chaos.bin"), bytes).expect("OUT_DIR is writable");
}

/// Size of the random code region (must match `CHAOS_TEXT_SIZE` in src/bin/chaos.rs).
const CHAOS_TEXT_SIZE: usize = 64 * 1024;
