//! Relinks the programs when the linker script changes (it is passed in .cargo/config.toml).
fn main() {
    println!("cargo:rerun-if-changed=user.ld");
}
