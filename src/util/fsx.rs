//! Files that appear complete or not at all: write to a temporary file beside the target, then
//! rename over it. A rename within one directory is atomic on POSIX file systems, so a reader
//! (or a crash) never sees a half-written file, and an existing file at the target stays intact
//! until the new one is complete.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file being written at a temporary path beside `target`. [`AtomicFile::commit`] renames it
/// over the target; dropping it without committing removes it.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Reserves the temporary path `.<name>.<pid>.partial` in the target's directory (the file
    /// itself is created by whoever writes it, e.g. a GStreamer `filesink`).
    pub fn new(target: &Path) -> AtomicFile {
        AtomicFile {
            target: target.to_path_buf(),
            temp: temp_path_for(target),
            committed: false,
        }
    }

    /// Where the data is written until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Creates (truncating) the temporary file.
    ///
    /// # Errors
    /// The OS error of creating it.
    pub fn create(&self) -> std::io::Result<File> {
        File::create(&self.temp)
    }

    /// Flushes the temporary file to disk and renames it over the target.
    ///
    /// # Errors
    /// The OS error of syncing or renaming; the temporary file is then removed on drop.
    pub fn commit(mut self) -> std::io::Result<()> {
        File::open(&self.temp)?.sync_all()?;
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// The temporary path this process writes `target` at: `.<name>.<pid>.partial` beside it.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    target.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Writes `bytes` to `path` atomically (see the module doc).
///
/// # Errors
/// The OS error of writing, syncing or renaming; the target is then unchanged.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = AtomicFile::new(path);
    let mut f = file.create()?;
    f.write_all(bytes)?;
    drop(f);
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_changes_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        {
            let file = AtomicFile::new(&target);
            file.create().unwrap().write_all(b"partial").unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"old");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"old", "dropped: kept");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing-dir/out.bin");
        assert!(write_atomic(&target, b"x").is_err());
        assert!(!target.exists());
    }
}
