//! Files that hold secrets or must never be seen half-written: the CA key, the vault master key,
//! the revocation list.
//!
//! Every write goes to a temporary file in the same directory, is fsynced, and is then moved into
//! place in one step, so a reader (the running server) sees the old file or the new one, never a
//! torn one. `create_new` additionally refuses to replace an existing file (like `O_EXCL`), which
//! is how a CA or master key is protected from being overwritten by a second `init`. This module
//! knows nothing of what the bytes mean.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::TryRng;
use zeroize::Zeroizing;

/// Mode for private keys and master keys: owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Mode for public, non-secret files (CA public key, revocation list).
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `bytes` to `path` with `mode`; fails with `AlreadyExists` if `path` exists, and never
/// leaves a partial file at `path`.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = write_temp(path, bytes, mode)?;
    // link(2) refuses an existing destination atomically, unlike rename(2).
    let linked = std::fs::hard_link(&temp, path);
    let removed = std::fs::remove_file(&temp);
    linked?;
    removed?;
    sync_parent(path)
}

/// Replaces `path` (or creates it) with `bytes` in one rename.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = write_temp(path, bytes, mode)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_parent(path)
}

/// Reads a secret file, refusing one that group or others may read (as OpenSSH does for keys).
pub fn read_private(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut file = File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("permissions {mode:04o} are too open; run chmod 600 on it"),
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Creates `dir` (and parents) if missing, owner-only for new directories.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Fills a buffer from the operating system's generator.
pub fn random_bytes<const N: usize>() -> io::Result<Zeroizing<[u8; N]>> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::rngs::SysRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| io::Error::other(format!("system random generator: {e}")))?;
    Ok(bytes)
}

/// Writes and fsyncs a uniquely named temporary file next to `path`.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let parent = parent_of(path);
    ensure_dir(&parent)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let suffix = hex::encode(*random_bytes::<6>()?);
    let temp = parent.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes the directory entry durable, so a crash after returning cannot lose the new name.
fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent_of(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_new_refuses_existing_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        create_new(&path, b"one", PRIVATE_MODE).unwrap();
        let err = create_new(&path, b"two", PRIVATE_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(&*read_private(&path).unwrap(), b"one");
        // No temporary files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn replace_and_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        replace(&path, b"a", PUBLIC_MODE).unwrap();
        replace(&path, b"b", PUBLIC_MODE).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
        let err = read_private(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }
}
