//! A small file system (tmpfs) mounted over a directory, for tests that need a disk that
//! fills up: root ignores permissions, but not a full file system.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs mounted over a directory (its contents copied in), unmounted when dropped.
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` when the test does not run as root, which alone may mount. As root (as the
    /// test command runs in CI) a mount that fails fails the test: a skipped check would pass
    /// without checking anything.
    pub fn over(dir: &Path, size: &str) -> Option<SmallDisk> {
        let uid = Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let aside = dir.with_extension("orig");
        std::fs::rename(dir, &aside).unwrap();
        std::fs::create_dir(dir).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "root could not mount a tmpfs over {}: {}",
            dir.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", aside.display()))
            .arg(dir)
            .status()
            .unwrap();
        assert!(copied.success());
        Some(SmallDisk(dir.to_path_buf()))
    }

    /// Writes a file until the disk is full; returns it.
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
