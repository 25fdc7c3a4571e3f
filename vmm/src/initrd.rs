//! The initrd lde hands the kernel: a cpio "newc" archive of the programs to run, and the
//! kernel command-line words (`lde.run=<spec>`) that say which to start, in order.

use std::path::{Path, PathBuf};

use lde_kcore::args::RUN_KEY;

use crate::guest;

/// A program to put in the initrd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub data: Vec<u8>,
}

/// Why the programs could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown program '{0}' (see 'lde run --list')")]
    UnknownProgram(String),
    #[error("an empty program spec")]
    EmptySpec,
    #[error("cannot read the program {0}")]
    Read(PathBuf, #[source] crate::files::Error),
    #[error("cannot name a program after {0}: its file name must be letters, digits, '-', '_' or '.'")]
    BadName(PathBuf),
    #[error("the program {0} has the same name as another program ({1})")]
    Duplicate(PathBuf, String),
}

/// Appends one file to a newc archive.
fn push_entry(out: &mut Vec<u8>, ino: usize, name: &str, data: &[u8]) {
    let mode = if name == TRAILER { 0 } else { 0o100_644 };
    let fields = [ino, mode, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

const TRAILER: &str = "TRAILER!!!";

/// A newc archive of `files`.
pub fn archive(files: &[File]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        push_entry(&mut out, i + 1, &f.name, &f.data);
    }
    push_entry(&mut out, files.len() + 1, TRAILER, &[]);
    out
}

/// Percent-encodes a spec for the kernel command line (which splits on spaces).
pub fn encode_spec(spec: &str) -> String {
    let mut out = String::with_capacity(spec.len());
    for b in spec.bytes() {
        if b.is_ascii_alphanumeric() || b"._-/:,+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a user's own program: its name is its file name.
pub fn read_program(path: &Path) -> Result<File, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .ok_or_else(|| Error::BadName(path.to_owned()))?;
    let data = crate::files::read_limited(path, crate::files::PROGRAM_MAX_SIZE)
        .map_err(|e| Error::Read(path.to_owned(), e))?;
    Ok(File { name, data })
}

/// What to boot with: the initrd and the command-line words that start the programs.
#[derive(Debug)]
pub struct Programs {
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

impl Programs {
    /// Nothing to run (`lde run --none`): an archive with no file and no `lde.run=` word; the
    /// kernel boots and shuts down with code 0.
    pub fn none() -> Programs {
        Programs { initrd: archive(&[]), cmdline: String::new() }
    }
}

/// Puts together the programs for `specs` (`name arg…`, built-in or one of `own`); each of
/// `own` that no spec names runs too, without arguments. No specs and no `own`: the demo set.
pub fn prepare(specs: &[String], own: Vec<File>) -> Result<Programs, Error> {
    let mut specs: Vec<String> = specs.to_vec();
    for f in &own {
        if guest::program(&f.name).is_some() {
            return Err(Error::Duplicate(PathBuf::from(&f.name), format!("built-in {}", f.name)));
        }
        if own.iter().filter(|g| g.name == f.name).count() > 1 {
            return Err(Error::Duplicate(PathBuf::from(&f.name), "--program".into()));
        }
        if !specs.iter().any(|s| s.split_whitespace().next() == Some(&f.name)) {
            specs.push(f.name.clone());
        }
    }
    if specs.is_empty() {
        specs = guest::DEMO.iter().map(|s| s.to_string()).collect();
    }
    let mut files: Vec<File> = Vec::new();
    let mut words = Vec::new();
    for spec in &specs {
        let name = spec.split_whitespace().next().ok_or(Error::EmptySpec)?;
        if !files.iter().any(|f| f.name == name) {
            let file = match own.iter().find(|f| f.name == name) {
                Some(f) => f.clone(),
                None => {
                    let p = guest::program(name).ok_or_else(|| Error::UnknownProgram(name.to_string()))?;
                    File { name: p.name.to_string(), data: p.elf.to_vec() }
                }
            };
            files.push(file);
        }
        words.push(format!("{RUN_KEY}={}", encode_spec(spec.trim())));
    }
    Ok(Programs { initrd: archive(&files), cmdline: words.join(" ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lde_kcore::args::Spec;
    use lde_kcore::cpio;

    #[test]
    fn the_kernel_reads_what_the_vmm_writes() {
        let files = vec![
            File { name: "hello".into(), data: b"HELLO".to_vec() },
            File { name: "x".into(), data: vec![7; 4099] },
        ];
        let archive = archive(&files);
        assert_eq!(archive.len() % 4, 0);
        let names: Vec<&str> = cpio::entries(&archive).map(|e| e.name).collect();
        assert_eq!(names, ["hello", "x"]);
        assert_eq!(cpio::find(&archive, "x"), Some(&[7u8; 4099][..]));
    }

    #[test]
    fn specs_survive_the_command_line() {
        for spec in ["counter 5000", "odd%name arg=1", "tabs\tand  spaces"] {
            let encoded = encode_spec(spec);
            assert!(!encoded.contains(' ') && !encoded.contains('='), "{encoded}");
            let decoded = Spec::decode(&encoded).unwrap();
            let words: Vec<&str> = decoded.words().collect();
            assert_eq!(words, spec.split_whitespace().collect::<Vec<_>>());
        }
    }

    #[test]
    fn prepares_programs_in_order_once_each() {
        let p = prepare(&["hello".into(), "hello again".into()], vec![]).unwrap();
        assert_eq!(p.cmdline, "lde.run=hello lde.run=hello%20again");
        assert_eq!(cpio::entries(&p.initrd).count(), 1);
        assert!(matches!(prepare(&["nope".into()], vec![]), Err(Error::UnknownProgram(n)) if n == "nope"));
        let demo = prepare(&[], vec![]).unwrap();
        assert_eq!(demo.cmdline, "lde.run=hello");
        let none = Programs::none();
        assert_eq!((none.cmdline.as_str(), cpio::entries(&none.initrd).count()), ("", 0));
    }

    #[test]
    fn own_programs_run_unless_named_and_may_not_shadow_built_ins() {
        let mine = File { name: "mine".into(), data: b"\x7fELF...".to_vec() };
        let p = prepare(&["hello".into()], vec![mine.clone()]).unwrap();
        assert_eq!(p.cmdline, "lde.run=hello lde.run=mine");
        let p = prepare(&["mine 3".into()], vec![mine.clone()]).unwrap();
        assert_eq!(p.cmdline, "lde.run=mine%203");
        assert_eq!(cpio::find(&p.initrd, "mine"), Some(&mine.data[..]));
        let shadow = File { name: "hello".into(), data: vec![] };
        assert!(matches!(prepare(&[], vec![shadow]), Err(Error::Duplicate(..))));
    }
}
