//! Revoked certificate serials and identities.
//!
//! The list is a small text file, `DATA/revocations`, so that `gatehouse ca revoke` works while
//! the server runs: the CLI rewrites it atomically and the server notices the change at the next
//! authentication ([`RevocationWatcher`]). One entry per line, `serial N` or `identity ID`;
//! `#` starts a comment. This module only answers "is this revoked?"; refusing is the verifier's.

use std::collections::BTreeSet;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::ca::{is_valid_name, CaError};
use crate::secret_file;

/// The file name of the revocation list inside the data directory.
pub const REVOCATIONS_FILE: &str = "revocations";

/// Where the revocation list of a data directory lives.
pub fn revocations_path(data_dir: &Path) -> PathBuf {
    data_dir.join(REVOCATIONS_FILE)
}

/// One line of the revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationEntry {
    /// One certificate, by the serial `issue` gave it.
    Serial(u64),
    /// Every certificate of an identity (its key id), past and future, until the line is removed.
    Identity(String),
}

impl fmt::Display for RevocationEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationEntry::Serial(n) => write!(f, "serial {n}"),
            RevocationEntry::Identity(id) => write!(f, "identity {id}"),
        }
    }
}

/// Revoked serials and identities, read from `DATA/revocations` (a small text file, so that
/// `gatehouse ca revoke` works while the server runs; the server re-reads it when it changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Serials of single revoked certificates.
    serials: BTreeSet<u64>,
    /// Identities all of whose certificates are revoked.
    identities: BTreeSet<String>,
}

impl Revocations {
    /// Reads the list; a missing file is an empty list (nothing revoked yet).
    pub fn load(path: &Path) -> Result<Revocations, CaError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Revocations::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Revocations::default()),
            Err(source) => Err(CaError::Io {
                path: path.to_path_buf(),
                error: source,
            }),
        }
    }

    /// Parses the list's text; `path` names it in errors (with the line).
    pub fn parse(text: &str, path: &Path) -> Result<Revocations, CaError> {
        let mut list = Revocations::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let entry = parse_entry(line).map_err(|message| CaError::RevocationSyntax {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            })?;
            list.insert(entry);
        }
        Ok(list)
    }

    /// Adds an entry to this in-memory list.
    pub fn insert(&mut self, entry: RevocationEntry) {
        match entry {
            RevocationEntry::Serial(n) => {
                self.serials.insert(n);
            }
            RevocationEntry::Identity(id) => {
                self.identities.insert(id);
            }
        }
    }

    /// Whether a certificate with this serial and key id is revoked.
    pub fn is_revoked(&self, serial: u64, identity: &str) -> bool {
        self.serials.contains(&serial) || self.identities.contains(identity)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.serials.len() + self.identities.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `entry` to the file at `path`, rewriting it atomically (temp + fsync + rename) so
    /// a server reading it concurrently never sees half a line. Returns false if it was already
    /// listed. Two revokes at the same instant from two processes can lose one; run them in turn.
    pub fn append(path: &Path, entry: &RevocationEntry) -> Result<bool, CaError> {
        match entry {
            RevocationEntry::Serial(0) => {
                return Err(CaError::BadRevocation("serial 0 is never issued".into()))
            }
            RevocationEntry::Identity(id) if !is_valid_name(id) => {
                return Err(CaError::BadIdentity(id.clone()))
            }
            _ => {}
        }
        let io = |source| CaError::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let mut text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "# Revoked certificates: `serial N` or `identity ID`, one per line.\n\
                 # Written by `gatehouse ca revoke`; the server re-reads it when it changes.\n"
                    .to_string()
            }
            Err(e) => return Err(io(e)),
        };
        // Refuse to extend a file we could not read back: the server would refuse it too.
        let current = Revocations::parse(&text, path)?;
        let present = match entry {
            RevocationEntry::Serial(n) => current.serials.contains(n),
            RevocationEntry::Identity(id) => current.identities.contains(id),
        };
        if present {
            return Ok(false);
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{entry}\n"));
        secret_file::replace(path, text.as_bytes(), secret_file::PUBLIC_MODE).map_err(io)?;
        Ok(true)
    }
}

/// One non-comment line.
fn parse_entry(line: &str) -> Result<RevocationEntry, String> {
    let mut words = line.split_whitespace();
    let (kind, value, extra) = (words.next(), words.next(), words.next());
    if extra.is_some() {
        return Err(format!(
            "expected `serial N` or `identity ID`, found {line:?}"
        ));
    }
    match (kind, value) {
        (Some("serial"), Some(n)) => match n.parse::<u64>() {
            Ok(n) if n > 0 => Ok(RevocationEntry::Serial(n)),
            _ => Err(format!(
                "bad serial {n:?}: expected a number from 1 to 2^64-1"
            )),
        },
        (Some("identity"), Some(id)) if is_valid_name(id) => {
            Ok(RevocationEntry::Identity(id.to_string()))
        }
        (Some("identity"), Some(id)) => Err(format!("bad identity {id:?}")),
        _ => Err(format!(
            "expected `serial N` or `identity ID`, found {line:?}"
        )),
    }
}

/// What identifies one version of the file: a rewrite by rename always changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    /// Inode: changes on every atomic replace.
    ino: u64,
    /// Length, for in-place edits by hand.
    len: u64,
    /// Modification time, for in-place edits by hand.
    modified: Option<SystemTime>,
}

/// Keeps the revocation list current at the cost of one `stat` per call.
#[derive(Debug)]
pub struct RevocationWatcher {
    /// `DATA/revocations`.
    path: PathBuf,
    /// The version last read (None: file absent) and its contents; shared by every connection.
    state: Mutex<(Option<Stamp>, Arc<Revocations>)>,
}

impl RevocationWatcher {
    /// Reads the list now; fails if it exists and cannot be read or parsed.
    pub fn new(path: &Path) -> Result<RevocationWatcher, CaError> {
        let stamp = stamp(path)?;
        let list = Revocations::load(path)?;
        Ok(RevocationWatcher {
            path: path.to_path_buf(),
            state: Mutex::new((stamp, Arc::new(list))),
        })
    }

    /// The current list, re-read first if the file changed. An error means the file exists but
    /// cannot be read or parsed: callers must refuse the authentication (fail closed), and the
    /// next call tries again.
    pub fn current(&self) -> Result<Arc<Revocations>, CaError> {
        let now = stamp(&self.path)?;
        let mut state = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.0 != now {
            let list = Arc::new(Revocations::load(&self.path)?);
            *state = (now, list);
        }
        Ok(Arc::clone(&state.1))
    }
}

/// The file's current stamp, None when it does not exist.
fn stamp(path: &Path) -> Result<Option<Stamp>, CaError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CaError::Io {
            path: path.to_path_buf(),
            error: source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_comments_and_errors() {
        let list = Revocations::parse(
            "# header\n\nserial 42  # lost laptop\nidentity ci-bot\n",
            Path::new("r"),
        )
        .unwrap();
        assert!(list.is_revoked(42, "x"));
        assert!(list.is_revoked(7, "ci-bot"));
        assert!(!list.is_revoked(7, "alice"));
        assert_eq!(list.len(), 2);
        for bad in [
            "serial x",
            "serial 0",
            "identity Bad!",
            "user alice",
            "serial 1 2",
        ] {
            let err = Revocations::parse(&format!("# c\n{bad}\n"), Path::new("r")).unwrap_err();
            assert!(err.to_string().starts_with("r:2: "), "{err}");
        }
    }

    #[test]
    fn append_and_watch() {
        let dir = tempfile::tempdir().unwrap();
        let path = revocations_path(dir.path());
        let watcher = RevocationWatcher::new(&path).unwrap();
        assert!(watcher.current().unwrap().is_empty());
        assert!(Revocations::append(&path, &RevocationEntry::Serial(9)).unwrap());
        assert!(!Revocations::append(&path, &RevocationEntry::Serial(9)).unwrap());
        assert!(watcher.current().unwrap().is_revoked(9, "a"));
        let first = watcher.current().unwrap();
        // Unchanged file: the same list is handed out without re-reading.
        assert!(Arc::ptr_eq(&first, &watcher.current().unwrap()));
        Revocations::append(&path, &RevocationEntry::Identity("alice".into())).unwrap();
        let list = watcher.current().unwrap();
        assert!(list.is_revoked(1, "alice") && list.is_revoked(9, "bob"));
        assert!(Revocations::append(&path, &RevocationEntry::Identity("A".into())).is_err());
        assert!(Revocations::append(&path, &RevocationEntry::Serial(0)).is_err());
        assert_eq!(Revocations::load(&path).unwrap(), *list);

        // A broken file fails closed, and recovers when fixed.
        std::fs::write(&path, "serial nope\n").unwrap();
        assert!(watcher.current().is_err());
        std::fs::write(&path, "serial 5\n").unwrap();
        assert!(watcher.current().unwrap().is_revoked(5, "x"));
    }
}
