//! The guest images built with lde (see build.rs) and embedded in the binary: the kernel and
//! the built-in user programs.

/// The lde kernel ELF, built for `x86_64-unknown-none`: what lde boots (no debug information).
pub const KERNEL: &[u8] = include_bytes!(env!("LDE_KERNEL_PATH"));
/// The same kernel with its debug information (line tables and functions), for GDB: `lde
/// export` writes it as `kernel.debug`. Its loaded bytes are those of [`KERNEL`].
pub const KERNEL_DEBUG: &[u8] = include_bytes!(env!("LDE_KERNEL_DEBUG_PATH"));

/// A built-in user program.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// Its name, as `lde run NAME` takes it.
    pub name: &'static str,
    /// One line saying what it does (the first `//!` line of its source).
    pub about: &'static str,
    /// The ELF file (what the kernel loads: no debug information).
    pub elf: &'static [u8],
    /// The same file with full debug information, for GDB (`lde export` writes `NAME.debug`).
    pub debug: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// The built-in program called `name`.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// What `lde run` runs when no program is named.
pub const DEMO: &[&str] = &["hello"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_a_valid_user_elf_with_a_description() {
        assert!(PROGRAMS.len() >= 2);
        for p in PROGRAMS {
            lde_kcore::elf::parse(p.elf).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(!p.about.is_empty(), "{}", p.name);
            assert!(p.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{}", p.name);
        }
        for name in DEMO {
            assert!(program(name).is_some(), "demo program {name}");
        }
    }
}
