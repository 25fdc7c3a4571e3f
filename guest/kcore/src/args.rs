//! Program specs on the kernel command line (`lde.run=counter%205000`) and the System V start
//! frame built from them on a new process's stack.

use lde_abi::user::{ARGS_BYTES_MAX, ARGS_MAX};

/// The command-line key naming one program to run, in order; its value is a percent-encoded
/// spec (`name arg…`).
pub const RUN_KEY: &str = "lde.run";

/// Why a spec or its start frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgsError {
    BadEncoding,
    Empty,
    TooMany,
    TooLong,
}

impl core::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ArgsError::BadEncoding => "malformed percent-encoding",
            ArgsError::Empty => "no program name",
            ArgsError::TooMany => "too many arguments",
            ArgsError::TooLong => "arguments too long",
        })
    }
}

/// A decoded spec: the program name and its arguments, words of `text`, which is UTF-8 (`build`
/// is the only way to make one, and checks it).
pub struct Spec {
    text: [u8; ARGS_BYTES_MAX],
    len: usize,
}

impl Spec {
    /// A spec from plain text (`name arg…`), as the `spawn` system call takes it.
    pub fn from_text(text: &[u8]) -> Result<Spec, ArgsError> {
        Self::build(text, false)
    }

    /// Decodes a percent-encoded spec.
    pub fn decode(encoded: &str) -> Result<Spec, ArgsError> {
        Self::build(encoded.as_bytes(), true)
    }

    fn build(bytes: &[u8], percent: bool) -> Result<Spec, ArgsError> {
        let mut spec = Spec { text: [0; ARGS_BYTES_MAX], len: 0 };
        let mut i = 0;
        while i < bytes.len() {
            let b = if percent && bytes[i] == b'%' {
                let hex = bytes.get(i + 1..i + 3).ok_or(ArgsError::BadEncoding)?;
                let hex = core::str::from_utf8(hex).map_err(|_| ArgsError::BadEncoding)?;
                i += 3;
                u8::from_str_radix(hex, 16).map_err(|_| ArgsError::BadEncoding)?
            } else {
                i += 1;
                bytes[i - 1]
            };
            if b == 0 {
                return Err(ArgsError::BadEncoding);
            }
            if spec.len == ARGS_BYTES_MAX {
                return Err(ArgsError::TooLong);
            }
            spec.text[spec.len] = b;
            spec.len += 1;
        }
        // ASCII (every built-in program's spec) is UTF-8, and `is_ascii` looks at a word at a
        // time where `from_utf8` takes ~6 emulated instructions a byte.
        if !spec.text[..spec.len].is_ascii() {
            core::str::from_utf8(&spec.text[..spec.len]).map_err(|_| ArgsError::BadEncoding)?;
        }
        let words = spec.words().count();
        if words == 0 {
            return Err(ArgsError::Empty);
        }
        if words > ARGS_MAX {
            return Err(ArgsError::TooMany);
        }
        Ok(spec)
    }

    /// The words: the program name first.
    pub fn words(&self) -> impl Iterator<Item = &str> + Clone {
        // SAFETY: `build`, the only maker of a `Spec`, checked that the text is UTF-8 (checking
        // it again here cost every call, three a process start, ~6 emulated instructions a byte).
        unsafe { core::str::from_utf8_unchecked(&self.text[..self.len]) }.split_ascii_whitespace()
    }

    /// The program name.
    pub fn name(&self) -> &str {
        self.words().next().unwrap_or("")
    }
}

/// Size of the page the start frame is built in.
pub const FRAME_PAGE_SIZE: usize = 4096;

/// Builds the System V start frame for `words` in `page`, the top page of the user stack, whose
/// end is the virtual address `stack_top`. Returns the initial `rsp` (16-byte aligned, pointing
/// at argc): argc, argv[0..argc], NULL, envp NULL, the `auxv` pairs and AT_NULL, then the
/// strings above.
pub fn build_start_frame<'a>(
    words: impl Iterator<Item = &'a str> + Clone,
    auxv: &[(u64, u64)],
    stack_top: u64,
    page: &mut [u8; FRAME_PAGE_SIZE],
) -> Result<u64, ArgsError> {
    let argc = words.clone().count();
    if argc > ARGS_MAX {
        return Err(ArgsError::TooMany);
    }
    let page_base = stack_top - FRAME_PAGE_SIZE as u64;
    // Strings from the top down.
    let mut pos = FRAME_PAGE_SIZE;
    let mut pointers = [0u64; ARGS_MAX];
    for (i, word) in words.enumerate() {
        let need = word.len() + 1;
        if need > pos || FRAME_PAGE_SIZE - pos + need > ARGS_BYTES_MAX {
            return Err(ArgsError::TooLong);
        }
        pos -= need;
        page[pos..pos + word.len()].copy_from_slice(word.as_bytes());
        page[pos + word.len()] = 0;
        pointers[i] = page_base + pos as u64;
    }
    // argc, argv…, NULL, envp NULL, auxv pairs, AT_NULL (two words).
    let qwords = 1 + argc + 1 + 1 + 2 * auxv.len() + 2;
    if qwords * 8 + 16 > pos {
        return Err(ArgsError::TooLong);
    }
    let start = (pos - qwords * 8) & !15;
    let mut put = |index: usize, value: u64| {
        let at = start + index * 8;
        page[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    put(0, argc as u64);
    for (i, &p) in pointers[..argc].iter().enumerate() {
        put(1 + i, p);
    }
    put(argc + 1, 0);
    put(argc + 2, 0);
    for (i, &(key, value)) in auxv.iter().enumerate() {
        put(argc + 3 + 2 * i, key);
        put(argc + 4 + 2 * i, value);
    }
    put(qwords - 2, 0);
    put(qwords - 1, 0);
    Ok(page_base + start as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_specs_are_taken_as_they_are() {
        let spec = Spec::from_text(b"pingpong 10 partner").unwrap();
        let mut words = spec.words();
        assert_eq!([words.next(), words.next(), words.next()], [Some("pingpong"), Some("10"), Some("partner")]);
        assert_eq!(Spec::from_text(b"a%20b").unwrap().name(), "a%20b");
        assert_eq!(Spec::from_text(b"nul\0").err(), Some(ArgsError::BadEncoding));
        assert_eq!(Spec::from_text(b"\xff").err(), Some(ArgsError::BadEncoding));
        assert_eq!(Spec::from_text(b"  ").err(), Some(ArgsError::Empty));
    }

    #[test]
    fn decodes_specs() {
        let spec = Spec::decode("counter%205000").unwrap();
        assert_eq!(spec.name(), "counter");
        let words: [&str; 2] = {
            let mut w = spec.words();
            [w.next().unwrap(), w.next().unwrap()]
        };
        assert_eq!(words, ["counter", "5000"]);
        assert_eq!(Spec::decode("a%25b").unwrap().name(), "a%b");
        assert_eq!(Spec::decode("bad%2").err(), Some(ArgsError::BadEncoding));
        assert_eq!(Spec::decode("bad%zz").err(), Some(ArgsError::BadEncoding));
        assert_eq!(Spec::decode("nul%00").err(), Some(ArgsError::BadEncoding));
        assert_eq!(Spec::decode("%20%20").err(), Some(ArgsError::Empty));
        let many = "x%20".repeat(ARGS_MAX + 1);
        assert_eq!(Spec::decode(&many).err(), Some(ArgsError::TooMany));
        let long = "y".repeat(ARGS_BYTES_MAX + 1);
        assert_eq!(Spec::decode(&long).err(), Some(ArgsError::TooLong));
    }

    fn qword(page: &[u8], at: u64, base: u64) -> u64 {
        let i = (at - base) as usize;
        u64::from_le_bytes(page[i..i + 8].try_into().unwrap())
    }

    #[test]
    fn start_frame_follows_system_v() {
        let top = 0x7fff_ffff_f000u64;
        let base = top - 4096;
        let mut page = [0xaau8; FRAME_PAGE_SIZE];
        let rsp = build_start_frame(["counter", "5000"].into_iter(), &[(0x4c44_0001, 2_600_000_000)], top, &mut page)
            .unwrap();
        assert_eq!(rsp % 16, 0);
        assert_eq!(qword(&page, rsp, base), 2);
        let argv0 = qword(&page, rsp + 8, base);
        let argv1 = qword(&page, rsp + 16, base);
        assert_eq!(qword(&page, rsp + 24, base), 0, "argv NULL");
        assert_eq!(qword(&page, rsp + 32, base), 0, "envp NULL");
        let aux = (qword(&page, rsp + 40, base), qword(&page, rsp + 48, base));
        assert_eq!(aux, (0x4c44_0001, 2_600_000_000), "the TSC frequency");
        let at_null = (qword(&page, rsp + 56, base), qword(&page, rsp + 64, base));
        assert_eq!(at_null, (0, 0), "AT_NULL");
        let s0 = (argv0 - base) as usize;
        assert_eq!(&page[s0..s0 + 8], b"counter\0");
        let s1 = (argv1 - base) as usize;
        assert_eq!(&page[s1..s1 + 5], b"5000\0");
        assert!(argv0 > rsp && argv1 > rsp);
    }

    #[test]
    fn start_frame_refuses_too_much() {
        let mut page = [0u8; FRAME_PAGE_SIZE];
        let big = "z".repeat(ARGS_BYTES_MAX);
        assert_eq!(build_start_frame([big.as_str()].into_iter(), &[], 0x10_0000, &mut page), Err(ArgsError::TooLong));
        let many = ["a"; ARGS_MAX + 1];
        assert_eq!(build_start_frame(many.into_iter(), &[], 0x10_0000, &mut page), Err(ArgsError::TooMany));
    }
}
