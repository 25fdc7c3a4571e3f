//! Reading the files a user names (`--kernel`, `--program`, `--baseline`, `--transcript`)
//! within limits: a regular file, checked before it is read, no larger than its limit. A
//! device (`/dev/zero`), a FIFO, a directory or a 2 GiB sparse file is refused in one line
//! instead of being read without bound.
//!
//! Also: whether two paths name the same file, so that one run never uses one file for two
//! things (`--report X --timeline X`).

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest kernel ELF lde reads (`--kernel`).
pub const KERNEL_MAX_SIZE: u64 = 64 << 20;
/// Largest program ELF lde reads (`--program`).
pub const PROGRAM_MAX_SIZE: u64 = 16 << 20;
/// Largest text file lde reads (`lde bench --baseline`, `lde probe --transcript`).
pub const TEXT_MAX_SIZE: u64 = 16 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
}

fn kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads all of `path` if it is a regular file of at most `limit` bytes.
///
/// The file is opened without blocking (a FIFO without a writer would block `open`), checked
/// through the open descriptor, and read no further than `limit` even if it grows meanwhile.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Error::Io)?;
    let meta = file.metadata().map_err(Error::Io)?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(Error::TooLarge { size: meta.len(), limit });
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut data).map_err(Error::Io)?;
    if data.len() as u64 > limit {
        return Err(Error::TooLarge { size: data.len() as u64, limit });
    }
    Ok(data)
}

/// `path` made absolute with its directory resolved (the file itself need not exist).
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().map(|d| d.join(name)).unwrap_or(absolute),
        _ => absolute,
    }
}

/// Whether `a` and `b` name the same file: the same file system object if both exist (links
/// included), else the same resolved path.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
    }
    resolved(a) == resolved(b)
}

/// The first output that names the same file as another output or as an input (each path
/// with the option that named it): the two options and the path.
pub fn first_clash<'a, L: Copy>(outputs: &[(L, &'a Path)], inputs: &[(L, &'a Path)]) -> Option<(L, L, &'a Path)> {
    outputs.iter().enumerate().find_map(|(i, &(first, a))| {
        outputs[i + 1..].iter().chain(inputs).find(|&&(_, b)| same_file(a, b)).map(|&(second, _)| (first, second, a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        assert!(matches!(read_limited(Path::new("/dev/zero"), 100), Err(Error::NotRegular("a character device"))));
        assert!(matches!(read_limited(Path::new("/"), 100), Err(Error::NotRegular("a directory"))));
        assert!(matches!(read_limited(Path::new("/nonexistent/x"), 100), Err(Error::Io(_))));
        let dir = std::env::temp_dir().join(format!("lde-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"12345").unwrap();
        assert_eq!(read_limited(&small, 5).unwrap(), b"12345");
        assert!(matches!(read_limited(&small, 4), Err(Error::TooLarge { size: 5, limit: 4 })));
        let sparse = dir.join("sparse");
        std::fs::File::create(&sparse).unwrap().set_len(1 << 40).unwrap();
        assert!(matches!(read_limited(&sparse, 1 << 20), Err(Error::TooLarge { .. })));
        let fifo = dir.join("fifo");
        let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_limited(&fifo, 100), Err(Error::NotRegular("a FIFO"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_one_file_under_two_names() {
        let dir = std::env::temp_dir().join(format!("lde-same-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a = dir.join("a.json");
        assert!(same_file(&a, &dir.join("sub/../a.json")));
        assert!(!same_file(&a, &dir.join("b.json")));
        std::fs::write(&a, b"{}").unwrap();
        std::os::unix::fs::symlink(&a, dir.join("link")).unwrap();
        assert!(same_file(&a, &dir.join("link")));
        let (x, y) = (Path::new("x"), Path::new("./x"));
        let outputs = [("--report", x), ("--api-sock", Path::new("y")), ("--timeline", y)];
        assert_eq!(first_clash(&outputs, &[]).map(|d| (d.0, d.1)), Some(("--report", "--timeline")));
        let outputs = [("--report", Path::new("z")), ("--timeline", Path::new("y"))];
        assert_eq!(first_clash(&outputs, &[]), None);
        let inputs = [("--kernel", Path::new("k")), ("--program", Path::new("./y"))];
        assert_eq!(first_clash(&outputs, &inputs).map(|d| (d.0, d.1)), Some(("--timeline", "--program")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
