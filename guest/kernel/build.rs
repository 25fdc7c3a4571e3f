//! Relinks the kernel when its linker script changes (the script itself is passed in
//! .cargo/config.toml).
fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
}
