//! Builds the guest kernel for `x86_64-unknown-none` and hands its path to the crate, which
//! embeds it (`lde::guest::KERNEL`).
//!
//! The kernel is its own Cargo workspace (guest/kernel) with its own target directory under
//! OUT_DIR, so this nested cargo never waits on the outer one's build lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let guest_dir = manifest_dir.join("../guest");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for dir in [
        "kernel/src",
        "kernel/Cargo.toml",
        "kernel/Cargo.lock",
        "kernel/linker.ld",
        "kernel/.cargo/config.toml",
        "kernel/build.rs",
        "abi/src",
        "abi/Cargo.toml",
        "kcore/src",
        "kcore/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=LDE_KERNEL_PROFILE");

    ensure_target();
    let kernel = build_guest_crate(&guest_dir.join("kernel"), &out_dir.join("guest-target"), "lde-kernel");
    println!("cargo:rustc-env=LDE_KERNEL_PATH={}", kernel.display());
}

/// Makes sure the rust standard library for the guest target is installed.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::exists) {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup (needed for the guest)");
    let installed = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        panic!(
            "the Rust target {GUEST_TARGET} is missing and `rustup target add {GUEST_TARGET}` \
             failed; install it by hand and build again"
        );
    }
}

/// Runs `cargo build --release` for a guest crate and returns the path of binary `bin`.
fn build_guest_crate(crate_dir: &Path, target_dir: &Path, bin: &str) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate_dir) // so that the crate's .cargo/config.toml applies
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    // The outer build's settings are for the host: keep them away from the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", crate_dir.display()));
    if !status.success() {
        panic!("building the guest crate {} failed ({status})", crate_dir.display());
    }
    target_dir.join(GUEST_TARGET).join("release").join(bin)
}
