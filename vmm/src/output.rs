//! Files lde writes when a run or a benchmark is over (`--report`, `--timeline`, `--json`,
//! `--histogram`). Each is created at the start as a temporary file beside its target, so that
//! an unwritable path is said before anything runs, and renamed over the target only once it
//! has been written whole: a run that fails leaves what was there before.
//!
//! A target that exists and is not a regular file (a pipe, `/dev/stdout`) is written directly.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// An output file being prepared.
pub struct OutputFile {
    path: PathBuf,
    target: Target,
}

enum Target {
    /// Renamed over `path` by [`OutputFile::commit`]; removed if dropped before.
    Temp(NamedTempFile),
    /// `path` itself, not a regular file.
    Direct(File),
}

impl OutputFile {
    /// Prepares `path`: a temporary file in its directory (or `path` itself when that is not a
    /// regular file). Fails as creating `path` would.
    pub fn create(path: &Path) -> io::Result<OutputFile> {
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
        let target = if special {
            Target::Direct(File::create(path)?)
        } else {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let name = path.file_name().map_or("output".into(), |n| n.to_string_lossy());
            let temp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                // The target gets the permissions a plain create would give it (less the umask).
                .permissions(std::fs::Permissions::from_mode(0o666))
                .tempfile_in(dir)
                // Said as creating `path` failed: the temporary name means nothing to the user.
                .map_err(|e| e.raw_os_error().map_or(e, io::Error::from_raw_os_error))?;
            Target::Temp(temp)
        };
        Ok(OutputFile { path: path.to_owned(), target })
    }

    /// The path the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the contents with `write` and puts the file in place.
    pub fn commit(self, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        match self.target {
            Target::Temp(mut temp) => {
                let mut out = io::BufWriter::new(temp.as_file_mut());
                write(&mut out)?;
                out.flush()?;
                drop(out);
                temp.persist(&self.path).map_err(|e| e.error)?;
                Ok(())
            }
            Target::Direct(mut file) => {
                let mut out = io::BufWriter::new(&mut file);
                write(&mut out)?;
                out.flush()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_file_stays_until_the_new_one_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, b"old").unwrap();
        drop(OutputFile::create(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "an abandoned output leaves the old file");
        let out = OutputFile::create(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the temporary file lies beside it");
        out.commit(|w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        assert!(OutputFile::create(&dir.path().join("missing/r.json")).is_err());
    }
}
