//! Empty files made ahead of the recordings that will take them, so that an exec's recording
//! gets its names by linking a file that already exists instead of creating one.
//!
//! Creating a file is the costly part of claiming a recording: it allocates an inode, and on
//! ext4 without a journal that allocation scans past every inode its block group freed in the
//! last minutes (a recordings directory whose old recordings are being deleted, or one under
//! a busy `/tmp`). Measured on such a directory, a creation took 0.3–0.6 ms of CPU against
//! 15 µs elsewhere on the same file system, and an exec waited for it. Linking a name to an
//! existing file allocates nothing. The stock is made again after execs end (the sealer
//! restocks after each batch), off the path of the execs that will use it.
//!
//! Spares live in `ROOT/.spare/`, on the recordings' file system (a link cannot cross file
//! systems). A spare linked into a recording keeps its `.spare` name until the next restock
//! removes it; removing a second name frees no inode. At start every name left there by an
//! earlier run is removed: an unused spare is an empty file, a used one is also a recording's
//! name, which keeps the file. When the stock is empty (more channels opened at once than it
//! holds) a recording creates its file as before.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{io_err, make_dir, RecordError};

/// The directory under the recordings root that holds the spares.
pub const SPARE_DIR: &str = ".spare";
/// Spares kept ready: more than the execs that end in one seal batch when they run back to
/// back, so a client running execs one after another never runs out.
pub const SPARE_FILES: usize = 16;

/// The stock of spare files of one recordings root. Shared by every channel of a gateway.
pub struct SpareFiles {
    /// `ROOT/.spare`.
    dir: PathBuf,
    /// What is ready and what was used; a lock held only to push or pop.
    stock: Mutex<Stock>,
}

#[derive(Default)]
struct Stock {
    /// Files ready to be linked into a recording, each open for writing.
    ready: Vec<Spare>,
    /// `.spare` names of files now linked into recordings, removed at the next restock.
    used: Vec<PathBuf>,
    /// The number in the next spare's name.
    next: u64,
    /// Set by [`SpareFiles::clear`]: no more spares are made.
    cleared: bool,
}

/// One empty file, open for writing, with its name in `.spare`.
pub struct Spare {
    /// The open file: the recording writes through it.
    pub(super) file: File,
    /// Its name in `.spare`.
    pub(super) path: PathBuf,
}

impl SpareFiles {
    /// Makes `ROOT/.spare` (0750) and removes whatever an earlier run left in it; the stock
    /// starts empty (see [`SpareFiles::restock`]).
    pub fn open(root: &Path) -> Result<SpareFiles, RecordError> {
        let dir = root.join(SPARE_DIR);
        make_dir(&dir)?;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let path = entry.map_err(|e| io_err(&dir, e))?.path();
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        Ok(SpareFiles {
            dir,
            stock: Mutex::new(Stock::default()),
        })
    }

    /// A spare, if one is ready.
    pub fn take(&self) -> Option<Spare> {
        self.lock().ready.pop()
    }

    /// Gives back a spare that was not used (its recording's names could not be linked).
    pub fn put_back(&self, spare: Spare) {
        self.lock().ready.push(spare);
    }

    /// Notes that the spare named `path` is now a recording's file: its `.spare` name goes at
    /// the next restock.
    pub fn used(&self, path: PathBuf) {
        self.lock().used.push(path);
    }

    /// Spares ready right now.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Removes the `.spare` names of used spares and makes files until [`SPARE_FILES`] are
    /// ready. Blocking; the lock is not held while the files are made. One restock runs at a
    /// time (the sealer's, after each batch; the first at start); after [`SpareFiles::clear`]
    /// it makes nothing. A name that cannot be removed is kept for the next restock; the first
    /// error is returned once the rest is done.
    pub fn restock(&self) -> Result<(), RecordError> {
        let (used, missing, mut next) = {
            let mut stock = self.lock();
            if stock.cleared {
                return Ok(());
            }
            let missing = SPARE_FILES.saturating_sub(stock.ready.len());
            (std::mem::take(&mut stock.used), missing, stock.next)
        };
        let mut outcome = Ok(());
        let mut kept = Vec::new();
        for path in used {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    if outcome.is_ok() {
                        outcome = Err(io_err(&path, e));
                    }
                    kept.push(path);
                }
            }
        }
        let mut made = Vec::with_capacity(missing);
        let mut dir_made = false;
        while made.len() < missing {
            let path = self.dir.join(next.to_string());
            next += 1;
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&path)
            {
                Ok(file) => made.push(Spare { file, path }),
                // A name taken by another process sharing the directory: the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                // The directory was removed under us: make it again, once.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir_made => {
                    dir_made = true;
                    if let Err(e) = make_dir(&self.dir) {
                        outcome = outcome.and(Err(e));
                        break;
                    }
                }
                Err(e) => {
                    outcome = outcome.and(Err(io_err(&path, e)));
                    break;
                }
            }
        }
        let mut stock = self.lock();
        stock.next = next;
        stock.used.extend(kept);
        if stock.cleared {
            // Cleared while these were being made: they go too.
            drop(stock);
            for spare in made {
                let _ = std::fs::remove_file(&spare.path);
            }
            let _ = std::fs::remove_dir(&self.dir);
            return outcome;
        }
        stock.ready.extend(made);
        outcome
    }

    /// Removes every spare name (used or not) and the directory, and stops further restocks:
    /// the gateway is stopping. Names a claim still running gives back later stay until the
    /// next start removes them.
    pub fn clear(&self) {
        let (ready, used) = {
            let mut stock = self.lock();
            stock.cleared = true;
            (
                std::mem::take(&mut stock.ready),
                std::mem::take(&mut stock.used),
            )
        };
        for path in ready.into_iter().map(|s| s.path).chain(used) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a spare recording file");
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }

    fn lock(&self) -> MutexGuard<'_, Stock> {
        // Every critical section only pushes, pops or swaps vectors: a panic inside one
        // cannot leave the stock half-changed.
        self.stock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::audit::AuditLog;
    use crate::record::cast::tests::header;
    use crate::record::cast::Reservation;

    /// A recordings root under a fresh directory, with a full stock of spares.
    fn stocked() -> (tempfile::TempDir, PathBuf, SpareFiles) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let spares = SpareFiles::open(&root).unwrap();
        spares.restock().unwrap();
        (dir, root, spares)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A claim takes a spare (no file is created: the recording is the spare under two more
    /// names), records and seals as usual, and the next restock replaces it and drops its
    /// spare name, leaving the recording with its one name.
    #[test]
    fn a_claim_links_a_spare_and_the_restock_replaces_it() {
        let (dir, root, spares) = stocked();
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(spares.ready(), SPARE_FILES);
        let spare_dir = root.join(SPARE_DIR);
        let before = names(&spare_dir);
        assert_eq!(before.len(), SPARE_FILES);

        let h = header();
        let reservation = Reservation::claim(&root, &h.name(), Some(&spares)).unwrap();
        assert_eq!(spares.ready(), SPARE_FILES - 1);
        let mut rec = reservation.start(&h).unwrap();
        let path = rec.path().to_path_buf();
        // The .cast name, its .open marker and the spare name: one file.
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 3);
        rec.output(b"from a spare\n").unwrap();
        rec.finish(Some(0), &audit).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("from a spare"));

        spares.restock().unwrap();
        assert_eq!(spares.ready(), SPARE_FILES);
        let after = names(&spare_dir);
        assert_eq!(after.len(), SPARE_FILES);
        assert_ne!(
            after, before,
            "the used spare's name is gone, a new one made"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 1);
        let report = crate::audit::verify(audit.path(), Some(&root)).unwrap();
        assert_eq!(report.recordings, 1);
    }

    /// Spares removed under the gateway (or a directory that refuses links) do not stop a
    /// recording: it creates its own file and drops the spare, and once the broken ones are
    /// used up the restock makes a full stock again.
    #[test]
    fn a_spare_that_cannot_be_linked_falls_back_to_a_new_file() {
        let (_dir, root, spares) = stocked();
        for name in names(&root.join(SPARE_DIR)) {
            std::fs::remove_file(root.join(SPARE_DIR).join(name)).unwrap();
        }
        let mut h = header();
        for channel in 0..SPARE_FILES as u32 {
            h.channel = channel;
            let reservation = Reservation::claim(&root, &h.name(), Some(&spares)).unwrap();
            let rec = reservation.start(&h).unwrap();
            // Its own file: the .cast name and the marker.
            assert_eq!(std::fs::metadata(rec.path()).unwrap().nlink(), 2);
        }
        assert_eq!(spares.ready(), 0);
        spares.restock().unwrap();
        assert_eq!(names(&root.join(SPARE_DIR)).len(), SPARE_FILES);

        // The whole directory removed: the next claims make their own files, and the restock
        // makes the directory again.
        std::fs::remove_dir_all(root.join(SPARE_DIR)).unwrap();
        for channel in 100..100 + SPARE_FILES as u32 {
            h.channel = channel;
            let reservation = Reservation::claim(&root, &h.name(), Some(&spares)).unwrap();
            drop(reservation.start(&h).unwrap());
        }
        spares.restock().unwrap();
        assert_eq!(names(&root.join(SPARE_DIR)).len(), SPARE_FILES);
    }

    /// What a run left in `.spare` (unused spares, and the spare name of a recording it was
    /// writing when it died) is removed at the next start; the recording keeps its own names.
    /// A clean stop removes the spares and their directory.
    #[test]
    fn start_removes_what_a_run_left_and_a_stop_removes_the_rest() {
        let (_dir, root, spares) = stocked();
        let h = header();
        let rec = Reservation::claim(&root, &h.name(), Some(&spares))
            .unwrap()
            .start(&h)
            .unwrap();
        let path = rec.path().to_path_buf();
        drop(rec);
        drop(spares); // like a kill: nothing is removed

        let spares = SpareFiles::open(&root).unwrap();
        assert!(names(&root.join(SPARE_DIR)).is_empty());
        assert_eq!(spares.ready(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 2);
        assert!(std::fs::read_to_string(&path).unwrap().contains("uname -a"));

        spares.restock().unwrap();
        spares.clear();
        assert!(!root.join(SPARE_DIR).exists());
        assert!(path.exists());
    }

    /// Once cleared (the gateway stopping), a restock makes nothing: a sealing job that
    /// finishes after the stop leaves no spare behind.
    #[test]
    fn a_restock_after_clear_makes_nothing() {
        let (_dir, root, spares) = stocked();
        spares.clear();
        spares.restock().unwrap();
        assert_eq!(spares.ready(), 0);
        assert!(!root.join(SPARE_DIR).exists());
    }
}
