//! A recording's files claimed before its command is known. The name (time, identity, target,
//! session id, channel) is fixed when the agent opens its session channel, so the two files can
//! be created then, while the agent is still sending its requests; the exec only writes the
//! header into the marker and starts recording. Creating files costs journal work that an exec
//! would otherwise wait for beside its decision record's fdatasync.
//!
//! A reservation that is never started (the channel closed, or asked for a shell) removes its
//! files when dropped. One a crash left behind is an empty marker beside an empty `.cast` file;
//! recovery removes it (see `recover`).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{
    header_json, name_part, EventEncoder, RecordError, Recorder, RecordingHeader, FLUSH_BYTES,
    OPEN_SUFFIX,
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
    /// The `.cast` file, created empty.
    file: File,
    /// Its path, for errors and removal.
    path: PathBuf,
    /// `YYYY-MM-DD/name.cast`.
    relative: String,
    /// The unsealed-recording marker, created empty; the header goes into it at start.
    marker: File,
    /// Its path, removed once the recording is sealed (or the claim given up).
    marker_path: PathBuf,
    /// The day directory, fsynced with the marker before the first write.
    day_dir: PathBuf,
}

impl Reservation {
    /// Creates `<name>.cast.open` and then `<name>.cast` under `root`'s directory for today
    /// (not fsynced: see [`Recorder::create_deferred`]).
    pub fn claim(root: &Path, name: &RecordingName<'_>) -> Result<Reservation, RecordError> {
        let now = Utc::now();
        let day = now.format("%Y-%m-%d").to_string();
        let day_dir = root.join(&day);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| RecordError::Io { path, source }
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&day_dir)
            .map_err(io(&day_dir))?;
        let stem = format!(
            "{}_{}_{}_{}_{}",
            now.format("%Y%m%dT%H%M%SZ"),
            name_part(name.identity),
            name_part(name.target),
            name_part(name.session_id),
            name.channel
        );
        // The marker goes first: a .cast file that exists without one after a crash would
        // never be found and sealed.
        let (file_name, marker_path, marker) = claim_name(&day_dir, &stem)?;
        let path = day_dir.join(&file_name);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&path)
        {
            Ok(file) => file,
            Err(source) => {
                let _ = std::fs::remove_file(&marker_path);
                return Err(io(&path)(source));
            }
        };
        Ok(Reservation {
            files: Some(Claimed {
                file,
                path,
                relative: format!("{day}/{file_name}"),
                marker,
                marker_path,
                day_dir,
            }),
        })
    }

    /// Starts recording: the header goes into the marker (recovery's copy) and is the first
    /// line the `.cast` file will get. On `Err` the files are removed.
    pub fn start(mut self, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        let Some(mut claimed) = self.files.take() else {
            return Err(RecordError::Failed {
                path: "a recording reservation used twice".into(),
            });
        };
        let header_line = header_json(header, Utc::now().timestamp());
        if let Err(source) = claimed.marker.write_all(header_line.as_bytes()) {
            let path = claimed.marker_path.display().to_string();
            remove(&claimed);
            return Err(RecordError::Io { path, source });
        }
        let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
        buf.extend_from_slice(header_line.as_bytes());
        buf.push(b'\n');
        Ok(Recorder {
            file: claimed.file,
            relative: claimed.relative,
            path: claimed.path,
            open_marker: claimed.marker_path,
            unsynced: Some((claimed.marker, claimed.day_dir)),
            buf,
            hasher: Sha256::new(),
            size: 0,
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

/// Creates `<stem>.cast.open` (create-new; a suffix is added on collision), empty. Returns the
/// name of the `.cast` file that goes with it, and the marker still open, not yet fsynced.
fn claim_name(dir: &Path, stem: &str) -> Result<(String, PathBuf, File), RecordError> {
    for attempt in 0..100u32 {
        let name = match attempt {
            0 => format!("{stem}.cast"),
            n => format!("{stem}.{n}.cast"),
        };
        let marker = dir.join(format!("{name}{OPEN_SUFFIX}"));
        if dir.join(&name).exists() {
            continue;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&marker)
        {
            Ok(f) => return Ok((name, marker, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(RecordError::Io {
                    path: marker.display().to_string(),
                    source,
                })
            }
        }
    }
    Err(RecordError::Io {
        path: dir.join(format!("{stem}.cast")).display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "100 recordings with this name already exist",
        ),
    })
}
