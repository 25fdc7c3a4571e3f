//! Guest text for pipes and files: the kernel ends its lines with `\r\n` (what a terminal
//! needs), which scripts reading lde's output do not want. [`LfOnly`] drops every `\r` that
//! comes right before a `\n` and passes everything else through, byte for byte.

use std::io::{self, Write};

/// A writer that turns `\r\n` into `\n` on its way to `out`.
///
/// Guest output arrives a byte at a time (each one a VM exit), so a `\r` is held back until the
/// next byte shows whether it ends a line; one still held when the writer is dropped is written
/// then.
pub struct LfOnly<W: Write> {
    out: W,
    held_cr: bool,
}

impl<W: Write> LfOnly<W> {
    pub fn new(out: W) -> Self {
        Self { out, held_cr: false }
    }
}

/// `bytes` with every `\r\n` turned into `\n` (for text that was captured whole).
pub fn to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut lf = LfOnly::new(&mut out);
    lf.write_all(bytes).expect("writing into a Vec cannot fail");
    drop(lf);
    out
}

impl<W: Write> Write for LfOnly<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut text = Vec::with_capacity(buf.len() + 1);
        for &b in buf {
            if std::mem::take(&mut self.held_cr) && b != b'\n' {
                text.push(b'\r');
            }
            if b == b'\r' {
                self.held_cr = true;
            } else {
                text.push(b);
            }
        }
        self.out.write_all(&text)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> Drop for LfOnly<W> {
    fn drop(&mut self) {
        if self.held_cr {
            let _ = self.out.write_all(b"\r");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_even_split_across_writes() {
        let mut out = Vec::new();
        {
            let mut lf = LfOnly::new(&mut out);
            for b in b"exit pid=1\r\nprogress\r50%\r\r\n" {
                lf.write_all(&[*b]).unwrap();
            }
            lf.write_all(b"last\r").unwrap();
        }
        assert_eq!(out, b"exit pid=1\nprogress\r50%\r\nlast\r");
        assert_eq!(to_lf(b"a\r\nb\r\n"), b"a\nb\n");
    }
}
