//! The data directory is private: umask 077 for everything the node creates, the
//! directory 0700, and files already in it (from older versions) 0600 / sub-dirs 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Set the process umask to 077 and make `dir` and everything under it owner-only.
/// Symbolic links are left alone (never followed), and only two levels are walked (the
/// store's files and its `blobs/`), in case `data_dir` points somewhere larger.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    restrict(dir, 2)
}

fn restrict(path: &Path, depth: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let want = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.permissions().mode() & 0o777 != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() && depth > 0 {
        for entry in std::fs::read_dir(path)? {
            restrict(&entry?.path(), depth - 1)?;
        }
    }
    Ok(())
}

/// Write `bytes` to `path` owner-only (0600), durably and atomically: a temporary file
/// beside it, fsync, rename. A crash leaves the old file or the new one, never a mix.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
