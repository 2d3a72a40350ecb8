//! A recording's files claimed before its command is known. The name (time, identity, target,
//! session id, channel) is fixed when the agent opens its session channel, so the two files can
//! be created then, while the agent is still sending its requests; the exec only writes the
//! header into the marker and starts recording. Creating files costs journal work that an exec
//! would otherwise wait for beside its decision record's fdatasync. Usually no file is created
//! even then: the claim links its two names to an empty file made ahead (see `spare`), and
//! creates one only when none is ready.
//!
//! The unsealed-recording marker `<name>.cast.open` is a second name (a hard link) of the
//! `.cast` file, not a file of its own: claiming allocates at most one inode, and sealing removes
//! a name without freeing one. That matters on ext4 without a journal, where every file creation
//! scans past the inodes freed in the last minutes; a marker file created and deleted per exec
//! made each exec's creations slower the more execs had just run. The recordings directory must
//! therefore be on a file system with hard links (every Linux one gatehouse is meant for).
//!
//! A reservation that is never started (the channel closed, or asked for a shell) removes its
//! files when dropped. One a crash left behind is an empty file under both names; recovery
//! removes it (see `recover`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::spare::{Spare, SpareFiles};
use super::{
    header_json, io_err, make_dir, name_part, EventEncoder, RecordError, Recorder, RecordingHeader,
    FLUSH_BYTES, OPEN_SUFFIX,
};

/// Who and what a recording is of: everything its file name carries.
pub struct RecordingName<'a> {
    /// The certificate identity the agent logged in with.
    pub identity: &'a str,
    /// The target's name (the login name).
    pub target: &'a str,
    /// The agent connection's session id.
    pub session_id: &'a str,
    /// The channel's number within that connection.
    pub channel: u32,
}

/// The claimed files of a recording not started yet.
pub struct Reservation {
    /// `None` once started (the recorder owns the files then).
    files: Option<Claimed>,
}

struct Claimed {
    /// The recording, created empty under both its names.
    file: File,
    /// Its `.cast` name, for errors and removal.
    path: PathBuf,
    /// `YYYY-MM-DD/name.cast`.
    relative: String,
    /// Its unsealed-marker name, removed once the recording is sealed (or the claim given up).
    marker_path: PathBuf,
    /// The day directory, fsynced (with the file) before the first event is written.
    day_dir: PathBuf,
}

impl Reservation {
    /// Creates `<name>.cast.open` and links `<name>.cast` to it, under `root`'s directory for
    /// today (not fsynced: see [`Recorder::create_deferred`]). The file is one of `spares` when
    /// one is ready (see `spare`); `spares` must belong to `root`.
    pub fn claim(
        root: &Path,
        name: &RecordingName<'_>,
        spares: Option<&SpareFiles>,
    ) -> Result<Reservation, RecordError> {
        let now = Utc::now();
        let day = now.format("%Y-%m-%d").to_string();
        let day_dir = root.join(&day);
        make_dir(&day_dir)?;
        let stem = format!(
            "{}_{}_{}_{}_{}",
            now.format("%Y%m%dT%H%M%SZ"),
            name_part(name.identity),
            name_part(name.target),
            name_part(name.session_id),
            name.channel
        );
        // The marker name goes first: a .cast file that exists without one after a crash would
        // never be found and sealed.
        let (file_name, marker_path, file) = claim_name(&day_dir, &stem, spares)?;
        Ok(Reservation {
            files: Some(Claimed {
                file,
                path: day_dir.join(&file_name),
                relative: format!("{day}/{file_name}"),
                marker_path,
                day_dir,
            }),
        })
    }

    /// Starts recording: the header is written at once (recovery's copy of who and what, should
    /// the process die before anything else is written). On `Err` the files are removed.
    pub fn start(mut self, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        let Some(mut claimed) = self.files.take() else {
            return Err(RecordError::Failed {
                path: "a recording reservation used twice".into(),
            });
        };
        let mut header_line = header_json(header, Utc::now().timestamp()).into_bytes();
        header_line.push(b'\n');
        if let Err(source) = claimed.file.write_all(&header_line) {
            let path = claimed.path.display().to_string();
            remove(&claimed);
            return Err(RecordError::Io { path, source });
        }
        let mut hasher = Sha256::new();
        hasher.update(&header_line);
        Ok(Recorder {
            file: claimed.file,
            relative: claimed.relative,
            path: claimed.path,
            open_marker: claimed.marker_path,
            unsynced: Some(claimed.day_dir),
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            hasher,
            size: header_line.len() as u64,
            encoder: EventEncoder::new(Instant::now()),
            session_id: header.session_id.clone(),
            channel: header.channel,
            failed: false,
            sealed: false,
        })
    }
}

impl Drop for Reservation {
    /// Never started: nothing was recorded and nothing ran, so the files go.
    fn drop(&mut self) {
        if let Some(claimed) = self.files.take() {
            remove(&claimed);
        }
    }
}

/// Removes a claim's files, the `.cast` file first (a marker without its file is dropped by
/// recovery; a file without its marker would never be found).
fn remove(claimed: &Claimed) {
    for path in [&claimed.path, &claimed.marker_path] {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an unused recording file");
        }
    }
}

/// Creates `<stem>.cast.open` (create-new; a suffix is added on collision), empty, and links
/// the `.cast` name to it. The marker is a second name of a spare file when `spares` has one
/// ready, else a new file. Returns the `.cast` file's name, the marker's path and the file, open
/// and not yet fsynced.
fn claim_name(
    dir: &Path,
    stem: &str,
    spares: Option<&SpareFiles>,
) -> Result<(String, PathBuf, File), RecordError> {
    let give_back = |spare: Option<Spare>| {
        if let (Some(spare), Some(spares)) = (spare, spares) {
            spares.put_back(spare);
        }
    };
    let mut spare = spares.and_then(SpareFiles::take);
    for attempt in 0..100u32 {
        let name = match attempt {
            0 => format!("{stem}.cast"),
            n => format!("{stem}.{n}.cast"),
        };
        let marker = dir.join(format!("{name}{OPEN_SUFFIX}"));
        let path = dir.join(&name);
        if path.exists() {
            continue;
        }
        let (file, spare_name) = match make_marker(&marker, spare.take(), spares) {
            Ok(made) => made,
            Err((e, back)) => {
                spare = back;
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    continue;
                }
                give_back(spare);
                return Err(io_err(&marker, e));
            }
        };
        if let Err(e) = std::fs::hard_link(&marker, &path) {
            let _ = std::fs::remove_file(&marker);
            // A spare is still an empty file under its `.spare` name: keep it for the next try.
            spare = spare_name.map(|path| Spare { file, path });
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                continue;
            }
            give_back(spare);
            return Err(RecordError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot link it to its unsealed marker (the recordings directory \
                         must support hard links): {e}"
                    ),
                ),
            });
        }
        if let (Some(spare_name), Some(spares)) = (spare_name, spares) {
            spares.used(spare_name);
        }
        return Ok((name, marker, file));
    }
    give_back(spare);
    Err(RecordError::Io {
        path: dir.join(format!("{stem}.cast")).display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "100 recordings with this name already exist",
        ),
    })
}

/// Gives the marker name `path` to a file: `spare` when given, else a new empty file. A spare
/// that cannot be linked where a new file can be made is broken (removed under us, say): the
/// new file is used and the spare's name goes at the next restock of `spares`. Returns the file
/// and, for a linked spare, its `.spare` name; on failure, the error and the spare back (the
/// new file's error when neither could be made: the directory is at fault, not the spare).
fn make_marker(
    path: &Path,
    spare: Option<Spare>,
    spares: Option<&SpareFiles>,
) -> Result<(File, Option<PathBuf>), (std::io::Error, Option<Spare>)> {
    let new_file = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
    };
    let Some(spare) = spare else {
        return new_file().map(|file| (file, None)).map_err(|e| (e, None));
    };
    match std::fs::hard_link(&spare.path, path) {
        Ok(()) => Ok((spare.file, Some(spare.path))),
        // The name is taken: the caller tries the next one, with the spare.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err((e, Some(spare))),
        Err(e) => {
            tracing::debug!(error = %e, "a spare recording file could not be linked");
            match new_file() {
                Ok(file) => {
                    if let Some(spares) = spares {
                        spares.used(spare.path);
                    }
                    Ok((file, None))
                }
                Err(e) => Err((e, Some(spare))),
            }
        }
    }
}
