//! What the console screen shows, gathered from gatehouse's own state and turned into the
//! `tui` crate's plain types: pending requests (approvals), live sessions (the registry) and
//! recent recordings (the recordings directory).
//!
//! Everything here that touches sled or the disk blocks: the screen calls it through
//! `spawn_blocking`. Recording paths are only ever produced here, by listing the recordings
//! directory; a path the screen hands back is opened only if this index listed it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use gatehouse_tui::replay::{summarize_limited, Cast};
use gatehouse_tui::{LiveSession, PendingItem, RecordingItem};

use super::live::{LiveEntry, LiveSessions};
use crate::approvals::{Approvals, HeldCommand};

/// Live sessions listed at most (newest first).
pub const MAX_LISTED_SESSIONS: usize = 500;
/// Recordings listed at most (newest first).
pub const MAX_LISTED_RECORDINGS: usize = 200;
/// Bytes read from the start of a recording for its list row (header, decision markers).
pub const SUMMARY_HEAD: u64 = 256 * 1024;
/// Bytes read from the end of a longer recording for its exit status.
pub const SUMMARY_TAIL: u64 = 4096;
/// Bytes of a recording the replay reads at most; a longer one replays up to there and says
/// that it is truncated.
pub const MAX_REPLAY_BYTES: u64 = 32 * 1024 * 1024;
/// File names read from one day's directory at most.
const MAX_DAY_ENTRIES: usize = 100_000;

/// The pending queue, oldest first. Blocking (the approvals store).
pub fn pending_items(approvals: &Approvals) -> Vec<PendingItem> {
    let now = Utc::now();
    approvals
        .pending()
        .iter()
        .map(|h| pending_item(h, now))
        .collect()
}

fn pending_item(h: &HeldCommand, now: DateTime<Utc>) -> PendingItem {
    PendingItem {
        id: h.id.to_string(),
        requester: h.requester.clone(),
        target: h.target.clone(),
        command: h.command_text(),
        highlight: None,
        rule: h.rule.clone(),
        reason: h.reason.clone(),
        age_secs: seconds_since(h.created, now),
        approvals: h.approvals(),
        approvals_required: h.approvals_required,
        normalized: h.commands.clone(),
    }
}

/// The live sessions, newest first.
pub fn session_items(sessions: &LiveSessions) -> Vec<LiveSession> {
    let now = Utc::now();
    sessions
        .snapshot(MAX_LISTED_SESSIONS)
        .into_iter()
        .map(|e| session_item(e, now))
        .collect()
}

fn session_item(e: LiveEntry, now: DateTime<Utc>) -> LiveSession {
    LiveSession {
        session_id: e.session_id,
        identity: e.identity,
        target: e.target,
        client: e.client.map(|c| c.to_string()).unwrap_or_default(),
        command: e.command,
        age_secs: seconds_since(e.started, now),
        started: e.started.format("%Y-%m-%d %H:%M:%S").to_string(),
        decision: e.decision,
    }
}

fn seconds_since(then: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((now - then).num_seconds()).unwrap_or(0)
}

/// A list row and the file state it was read from.
struct Summary {
    /// File length when summarized: a recording still being written grows.
    len: u64,
    /// Modification time when summarized.
    modified: Option<SystemTime>,
    /// The row.
    item: RecordingItem,
}

/// The newest recordings under the recordings directory, with each file's row cached until
/// the file changes (so a refresh reads only new or growing recordings).
pub struct RecordingIndex {
    /// The configured recordings directory; nothing outside it is listed.
    root: PathBuf,
    /// Rows of the files listed last time, by path (at most [`MAX_LISTED_RECORDINGS`]).
    cache: HashMap<PathBuf, Summary>,
}

impl RecordingIndex {
    /// An index of `root` (read at the first [`Self::refresh`]).
    pub fn new(root: &Path) -> RecordingIndex {
        RecordingIndex {
            root: root.to_path_buf(),
            cache: HashMap::new(),
        }
    }

    /// Re-reads the directory: the newest recordings, newest first. Blocking (disk).
    pub fn refresh(&mut self) -> Vec<RecordingItem> {
        let paths = newest_recordings(&self.root, MAX_LISTED_RECORDINGS);
        let mut cache = HashMap::with_capacity(paths.len());
        let mut items = Vec::with_capacity(paths.len());
        for path in paths {
            let meta = std::fs::symlink_metadata(&path).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let summary = match self.cache.remove(&path) {
                Some(s) if s.len == len && s.modified == modified => s,
                _ => match summarize_limited(&path, SUMMARY_HEAD, SUMMARY_TAIL) {
                    Ok(item) => Summary {
                        len,
                        modified,
                        item,
                    },
                    // Just created (no header yet) or unreadable: not listed this time.
                    Err(err) => {
                        tracing::debug!(path = %path.display(), error = %err, "recording not listed");
                        continue;
                    }
                },
            };
            items.push(summary.item.clone());
            cache.insert(path, summary);
        }
        self.cache = cache;
        items
    }

    /// Whether the last refresh listed `path`.
    pub fn lists(&self, path: &Path) -> bool {
        self.cache.contains_key(path)
    }

    /// Reads a listed recording for replay (at most [`MAX_REPLAY_BYTES`]). Blocking (disk).
    pub fn open(&self, path: &Path) -> Result<Cast, String> {
        if !self.lists(path) {
            return Err("that recording is not in the list".to_string());
        }
        Cast::open_limited(path, MAX_REPLAY_BYTES).map_err(|e| e.to_string())
    }
}

/// Paths of the newest `limit` `.cast` files under `root/YYYY-MM-DD/`, newest first. File
/// names start with their UTC start time, so name order is time order. Only regular files
/// are listed (no symlinks out of the directory).
fn newest_recordings(root: &Path, limit: usize) -> Vec<PathBuf> {
    let mut days: Vec<(String, PathBuf)> = read_names(root, MAX_DAY_ENTRIES)
        .into_iter()
        .filter(|(name, is_dir, _)| *is_dir && is_day(name))
        .map(|(name, _, path)| (name, path))
        .collect();
    days.sort_by(|a, b| b.0.cmp(&a.0));
    let mut out = Vec::new();
    for (_, day) in days {
        let mut files: Vec<(String, PathBuf)> = read_names(&day, MAX_DAY_ENTRIES)
            .into_iter()
            .filter(|(name, is_dir, _)| !*is_dir && name.ends_with(".cast"))
            .map(|(name, _, path)| (name, path))
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0));
        for (_, path) in files {
            if out.len() >= limit {
                return out;
            }
            out.push(path);
        }
    }
    out
}

/// `(name, is directory, path)` of the entries of `dir` that are directories or regular
/// files, at most `limit`; symlinks and names that are not UTF-8 are left out.
fn read_names(dir: &Path, limit: usize) -> Vec<(String, bool, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let kind = e.file_type().ok()?;
            if !kind.is_dir() && !kind.is_file() {
                return None;
            }
            let name = e.file_name().into_string().ok()?;
            Some((name, kind.is_dir(), e.path()))
        })
        .take(limit)
        .collect()
}

/// `YYYY-MM-DD`.
fn is_day(name: &str) -> bool {
    name.len() == 10
        && name.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, identity: &str, ts: i64, marker: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "{{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":{ts},\"gatehouse\":{{\"identity\":\"{identity}\",\"target\":\"demo\"}}}}\n[0.1,\"m\",\"{marker}\"]\n[0.2,\"x\",\"0\"]\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn lists_newest_first_bounded_and_opens_only_what_it_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let old = root.join("2025-06-01/20250601T100000Z_a_demo_s1_1.cast");
        let new = root.join("2025-06-02/20250602T100000Z_b_demo_s2_1.cast");
        let newer = root.join("2025-06-02/20250602T110000Z_c_demo_s3_1.cast");
        write(&old, "agent-a", 1_748_772_000, "allow rule r");
        write(&new, "agent-b", 1_748_858_400, "held X rule r: y");
        write(&newer, "agent-c", 1_748_862_000, "deny rule r: z");
        // Not recordings: other names, other directories, a symlink.
        std::fs::write(root.join("2025-06-02/notes.txt"), "x").unwrap();
        std::fs::create_dir_all(root.join("misc")).unwrap();
        write(&root.join("misc/x.cast"), "agent-x", 1, "allow");
        std::os::unix::fs::symlink(&old, root.join("2025-06-02/link.cast")).unwrap();

        let mut index = RecordingIndex::new(root);
        let items = index.refresh();
        let who: Vec<&str> = items.iter().map(|i| i.identity.as_str()).collect();
        assert_eq!(who, ["agent-c", "agent-b", "agent-a"]);
        assert_eq!(items[0].decision, "deny");
        assert_eq!(items[0].exit, Some(0));
        assert_eq!(items[2].started, "2025-06-01 10:00:00");

        assert!(index.open(&newer).is_ok());
        assert!(index.open(&root.join("misc/x.cast")).is_err());
        assert!(index.open(&root.join("2025-06-02/link.cast")).is_err());
        assert!(index
            .open(&root.join("2025-06-02/../2025-06-01/20250601T100000Z_a_demo_s1_1.cast"))
            .is_err());

        assert_eq!(newest_recordings(root, 2), vec![newer.clone(), new]);
        // A changed file is read again.
        write(&newer, "agent-zz", 1_748_862_000, "allow rule r");
        assert_eq!(index.refresh()[0].identity, "agent-zz");
    }

    #[test]
    fn day_names() {
        assert!(is_day("2025-06-01"));
        assert!(!is_day("2025-6-01x"));
        assert!(!is_day("..........."));
        assert!(!is_day("2025_06_01"));
    }
}
