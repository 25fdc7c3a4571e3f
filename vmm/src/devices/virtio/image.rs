//! A disk image: a raw file of 512-byte sectors, opened, checked and locked for one run.
//!
//! The file is never read into memory: requests read and write it in place (`pread`/`pwrite`),
//! so a large sparse image costs nothing until the guest touches it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lde_abi::virtio::{MAX_DISKS, MAX_SECTORS, SECTOR_SIZE};

/// What `--disk` names: a file and whether the guest may write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
}

impl std::str::FromStr for DiskSpec {
    type Err = String;

    /// `FILE` or `FILE,ro`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (path, read_only) = match s.rsplit_once(',') {
            Some((path, "ro")) => (path, true),
            Some((_, other)) => return Err(format!("unknown disk option {other:?} (the only one is \"ro\")")),
            None => (s, false),
        };
        if path.is_empty() {
            return Err("no file named".into());
        }
        Ok(DiskSpec { path: PathBuf::from(path), read_only })
    }
}

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open disk image {0}")]
    Open(PathBuf, #[source] io::Error),
    #[error("disk image {0} is a directory, not a file")]
    Directory(PathBuf),
    #[error("disk image {0} is not a regular file (a FIFO, socket or device)")]
    NotRegular(PathBuf),
    #[error("disk image {0} is {1} bytes, not a whole number of 512-byte sectors")]
    NotSectors(PathBuf, u64),
    #[error("disk image {0} is empty")]
    Empty(PathBuf),
    #[error("disk image {0} holds {1} sectors; lde's disks hold at most {max} (2 TiB less 512 bytes)", max = MAX_SECTORS)]
    TooLarge(PathBuf, u64),
    #[error("disk image {0} is in use by another process (lde locks the images it runs with)")]
    Locked(PathBuf),
    #[error("cannot lock disk image {0}")]
    Lock(PathBuf, #[source] io::Error),
    #[error("{0} disks given; lde gives a guest at most {max}", max = MAX_DISKS)]
    TooMany(usize),
}

/// An open, checked, locked image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
}

impl DiskImage {
    /// Opens `spec`'s file: a regular file of whole sectors, at most [`MAX_SECTORS`], locked
    /// (shared if read-only, exclusive otherwise) so that no other lde writes it meanwhile.
    pub fn open(spec: &DiskSpec) -> Result<DiskImage, Error> {
        let path = spec.path.clone();
        // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check below refuses it.
        let file =
            OpenOptions::new().read(true).write(!spec.read_only).custom_flags(libc::O_NONBLOCK).open(&path).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::EISDIR) => Error::Directory(path.clone()),
                    _ => Error::Open(path.clone(), e),
                },
            )?;
        let meta = file.metadata().map_err(|e| Error::Open(path.clone(), e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::Directory(path));
        }
        if !kind.is_file() || kind.is_fifo() {
            return Err(Error::NotRegular(path));
        }
        let size = meta.len();
        if size % SECTOR_SIZE != 0 {
            return Err(Error::NotSectors(path, size));
        }
        let sectors = size / SECTOR_SIZE;
        if sectors == 0 {
            return Err(Error::Empty(path));
        }
        if sectors > MAX_SECTORS {
            return Err(Error::TooLarge(path, sectors));
        }
        lock(&file, spec.read_only).map_err(|e| match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Error::Locked(path.clone()),
            _ => Error::Lock(path.clone(), e),
        })?;
        Ok(DiskImage { file, path, sectors, read_only: spec.read_only })
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `buf.len()` bytes at byte `offset` (the caller has checked the range).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes `buf` at byte `offset` (the caller has checked the range and that the disk is
    /// writable).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Makes every completed write durable (fdatasync). A no-op on a read-only disk.
    pub fn flush(&self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }
}

/// `flock` without waiting: shared for a read-only disk, exclusive for a writable one.
fn lock(file: &File, shared: bool) -> io::Result<()> {
    let how = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
    // SAFETY: flock on a descriptor this `File` owns; it touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens every `--disk`, in order (disk 0 is the first).
pub fn open_all(specs: &[DiskSpec]) -> Result<Vec<DiskImage>, Error> {
    if specs.len() > MAX_DISKS {
        return Err(Error::TooMany(specs.len()));
    }
    specs.iter().map(DiskImage::open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path, read_only: bool) -> DiskSpec {
        DiskSpec { path: path.to_path_buf(), read_only }
    }

    #[test]
    fn parses_file_and_ro() {
        assert_eq!("a.img".parse::<DiskSpec>().unwrap(), spec(Path::new("a.img"), false));
        assert_eq!("dir/a,b.img,ro".parse::<DiskSpec>().unwrap(), spec(Path::new("dir/a,b.img"), true));
        assert!("a.img,rw".parse::<DiskSpec>().is_err());
        assert!(",ro".parse::<DiskSpec>().is_err());
    }

    #[test]
    fn refuses_what_is_not_a_disk() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("odd");
        std::fs::write(&odd, [0u8; 513]).unwrap();
        assert!(matches!(DiskImage::open(&spec(&odd, false)), Err(Error::NotSectors(_, 513))));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, []).unwrap();
        assert!(matches!(DiskImage::open(&spec(&empty, true)), Err(Error::Empty(_))));
        assert!(matches!(DiskImage::open(&spec(dir.path(), true)), Err(Error::Directory(_))));
        assert!(matches!(DiskImage::open(&spec(&dir.path().join("none"), true)), Err(Error::Open(..))));
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(matches!(DiskImage::open(&spec(&fifo, true)), Err(Error::NotRegular(_))));
    }

    #[test]
    fn a_sparse_image_past_the_sector_limit_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let file = File::create(&big).unwrap();
        // Sparse: ext4, xfs and tmpfs all hold a 2 TiB file that uses no blocks.
        file.set_len((MAX_SECTORS + 1) * SECTOR_SIZE).unwrap();
        assert!(matches!(DiskImage::open(&spec(&big, true)), Err(Error::TooLarge(_, n)) if n == MAX_SECTORS + 1));
    }

    #[test]
    fn a_writable_image_is_locked_against_a_second_user() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("img");
        std::fs::write(&img, [0u8; 1024]).unwrap();
        let first = DiskImage::open(&spec(&img, false)).unwrap();
        assert_eq!(first.sectors(), 2);
        assert!(matches!(DiskImage::open(&spec(&img, false)), Err(Error::Locked(_))));
        assert!(matches!(DiskImage::open(&spec(&img, true)), Err(Error::Locked(_))));
        drop(first);
        let a = DiskImage::open(&spec(&img, true)).unwrap();
        let b = DiskImage::open(&spec(&img, true)).unwrap();
        assert!(matches!(DiskImage::open(&spec(&img, false)), Err(Error::Locked(_))));
        drop((a, b));
    }
}
