//! asciicast v2 session recorder: one file per session channel, readable by every asciinema
//! player, sealed into the audit log when it ends.
//!
//! Files live at `ROOT/YYYY-MM-DD/<UTC time>_<identity>_<target>_<session id>_<channel>.cast`
//! (name parts reduced to `[A-Za-z0-9._-]`). The first line is the header; every other line is
//! one event `[seconds since start (6 decimals), code, data]`: `o` output, `i` input, `r` resize
//! `"COLSxROWS"`, `m` marker, and last `x` with the exit status. Every line is valid JSON and
//! valid UTF-8 (a multi-byte sequence split across reads is carried to the next event; invalid
//! bytes become U+FFFD); there are no blank lines; output keeps its bytes, so exec output
//! keeps bare `\n` (players turn it into `\r\n` when the header says there was no PTY).
//!
//! Events are buffered and written to the file every 64 KiB, and whenever the caller calls
//! [`Recorder::write_pending`]; the gateway's writer does at least once a second
//! ([`FLUSH_INTERVAL`]), so a killed process loses at most a second of output. A running
//! SHA-256 follows the bytes as they are written; [`Recorder::finish`] adds the `x` event,
//! fsyncs and appends `recording.sealed` to the audit log without re-reading the file. While a
//! recording is unsealed the file has a second name, `<file>.open` (see `reserve`); at startup
//! [`recover_unsealed`] repairs and seals whatever a crash left open.
//!
//! This module does not mask secrets (see `record::mask`; the caller masks first) and does not
//! decide whether input is recorded (the caller calls [`Recorder::input`] only when enabled).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditLog};

mod event;
mod json;
mod recover;
mod reserve;
mod seal;
mod spare;
mod utf8;

pub use event::EventEncoder;
pub use recover::recover_unsealed;
pub use reserve::{RecordingName, Reservation};
pub use seal::{seal_all, Closed};
pub use spare::SpareFiles;

/// Buffered events are written out once this much is pending.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// ... or once this long has passed since the last write.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Size used when the channel has no PTY.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// Suffix of the marker that exists while a recording is unsealed.
const OPEN_SUFFIX: &str = ".open";
/// Longest name part kept in a file name; the header carries the full values.
const MAX_NAME_PART: usize = 48;

/// Recorder errors. Any of them means the session is no longer being recorded: the caller
/// refuses or ends the session (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("recording {path}: an earlier write failed; the recording is incomplete")]
    Failed { path: String },
    #[error("recording {path}: sealing it in the audit log failed: {source}")]
    Audit { path: String, source: AuditError },
}

/// What the recording's header says about the session; set once at [`Recorder::create`].
#[derive(Debug, Clone)]
pub struct RecordingHeader {
    /// Ties the recording to the session's log lines and audit records.
    pub session_id: String,
    /// SSH channel number within the session: one recording per channel.
    pub channel: u32,
    /// Who: the certificate's identity (key id).
    pub identity: String,
    /// Which certificate: revocation and issuance records name it by serial.
    pub serial: u64,
    /// Where the commands went.
    pub target: String,
    /// The account on the target the session ran as.
    pub upstream_user: String,
    /// The agent's address (`ip:port`).
    pub client: String,
    /// Terminal columns from the pty-req, or [`DEFAULT_SIZE`] without a PTY; players size
    /// their screen from it.
    pub width: u16,
    /// Terminal rows, likewise.
    pub height: u16,
    /// TERM from the pty-req; players pick their emulation from it.
    pub term: Option<String>,
    /// Shown by players; usually the command line for exec.
    pub title: String,
    /// Whether the channel had a PTY; without one, replay turns `\n` into `\r\n`.
    pub pty: bool,
}

impl RecordingHeader {
    /// What the recording's file name is made of.
    pub fn name(&self) -> RecordingName<'_> {
        RecordingName {
            identity: &self.identity,
            target: &self.target,
            session_id: &self.session_id,
            channel: self.channel,
        }
    }
}

/// The outcome of [`Recorder::finish`], as sealed in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecording {
    /// The file.
    pub path: PathBuf,
    /// The path relative to the recordings root, as the audit record names it.
    pub relative: String,
    /// Bytes in the file.
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Event lines (the header excluded).
    pub events: u64,
}

/// An open recording. Synchronous and cheap per call (events go to a buffer); the caller
/// serializes access, e.g. behind a `Mutex` shared by the channel's tasks.
pub struct Recorder {
    /// The `.cast` file, opened create-new so a recording is never overwritten.
    file: File,
    /// For errors and the seal.
    path: PathBuf,
    /// `YYYY-MM-DD/name.cast`: what the seal and `audit verify` name.
    relative: String,
    /// The file's unsealed-marker name; removed only once the seal is in the audit log.
    open_marker: PathBuf,
    /// Set until the file and its names are durable ([`Recorder::create_deferred`]): the
    /// directory to fsync, with the file, before any event is written.
    unsynced: Option<PathBuf>,
    /// Event lines not yet written: one `write` per flush instead of one per event.
    buf: Vec<u8>,
    /// SHA-256 of every byte written so far, so sealing needs no second read.
    hasher: Sha256,
    /// Bytes written so far.
    size: u64,
    /// Turns events into lines in `buf`; counts them for the seal.
    encoder: EventEncoder,
    /// Session id and channel, repeated in the seal so auditors can join records.
    session_id: String,
    channel: u32,
    /// Set after a failed write: later calls fail instead of writing after a hole.
    failed: bool,
    /// Set by `finish`, so `Drop` does not touch a sealed file.
    sealed: bool,
}

impl Recorder {
    /// Creates the recording for one channel under `root` and writes its header. On `Err` the
    /// caller refuses the session: nothing may run unrecorded.
    pub fn create(root: &Path, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        let mut recorder = Recorder::create_deferred(root, header)?;
        recorder.write_pending()?;
        Ok(recorder)
    }

    /// Creates the files like [`Recorder::create`] but leaves the fsyncs that make them
    /// durable (file, directory) to the first write, so a session can start without them: no
    /// event reaches the file before its names are durable. A crash before the first write
    /// loses what was not written yet, as a crash loses the last second of any recording. A
    /// recording first written at its seal (an exec that ended within the second) is written,
    /// then made durable with its names, then sealed: the one case where the order cannot
    /// matter, since nothing of it was on disk before.
    pub fn create_deferred(root: &Path, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        Reservation::claim(root, &header.name(), None)?.start(header)
    }

    /// Writes buffered events out now (making the names durable first, if still pending).
    pub fn write_pending(&mut self) -> Result<(), RecordError> {
        self.write_out()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records output (stdout and stderr alike) as an `o` event.
    pub fn output(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.output_at(bytes, Instant::now())
    }

    /// Records output that was seen at `at` (a writer that runs behind the data path stamps
    /// events with the time they happened, not the time it got to them).
    pub fn output_at(&mut self, bytes: &[u8], at: Instant) -> Result<(), RecordError> {
        self.check()?;
        self.encoder.output(&mut self.buf, bytes, at);
        self.written_on_event()
    }

    /// Records input as an `i` event.
    pub fn input(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.input_at(bytes, Instant::now())
    }

    /// Records input seen at `at`.
    pub fn input_at(&mut self, bytes: &[u8], at: Instant) -> Result<(), RecordError> {
        self.check()?;
        self.encoder.input(&mut self.buf, bytes, at);
        self.written_on_event()
    }

    /// Records a terminal resize (`r`, `"COLSxROWS"`).
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<(), RecordError> {
        self.resize_at(cols, rows, Instant::now())
    }

    /// Records a terminal resize seen at `at`.
    pub fn resize_at(&mut self, cols: u16, rows: u16, at: Instant) -> Result<(), RecordError> {
        self.event("r", &format!("{cols}x{rows}"), at)
    }

    /// Records a marker (`m`): command lines, decisions, approvals, session end.
    pub fn marker(&mut self, label: &str) -> Result<(), RecordError> {
        self.marker_at(label, Instant::now())
    }

    /// Records a marker stamped `at`.
    pub fn marker_at(&mut self, label: &str, at: Instant) -> Result<(), RecordError> {
        self.event("m", label, at)
    }

    /// Ends the recording and seals it on its own: [`Recorder::close`], then [`seal_all`]
    /// (fsyncs, `recording.sealed` in `audit` with `path` relative to the root, `size`,
    /// `sha256`, `events`, `exit_status`, `session_id`, `channel`; the marker removed).
    /// Session-end and decision markers are the caller's, before this. The gateway seals
    /// recordings that end close together in one go instead (see `seal`).
    ///
    /// If the audit append fails the file keeps its `.open` marker, so the next start seals
    /// it as recovered.
    pub fn finish(
        self,
        exit_status: Option<i32>,
        audit: &AuditLog,
    ) -> Result<SealedRecording, RecordError> {
        let closed = self.close(exit_status)?;
        let path = closed.path().display().to_string();
        seal_all(vec![closed], audit)
            .pop()
            .unwrap_or(Err(RecordError::Failed { path }))
    }

    fn event(&mut self, code: &str, data: &str, at: Instant) -> Result<(), RecordError> {
        self.check()?;
        self.encoder.event(&mut self.buf, code, data, at);
        self.written_on_event()
    }

    /// Refuses events after a failed write: nothing may follow a hole in the file.
    fn check(&self) -> Result<(), RecordError> {
        if self.failed {
            return Err(RecordError::Failed {
                path: self.path.display().to_string(),
            });
        }
        Ok(())
    }

    /// Writes the buffer out after an event once it holds [`FLUSH_BYTES`].
    fn written_on_event(&mut self) -> Result<(), RecordError> {
        if self.buf.len() >= FLUSH_BYTES {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes the buffer to the file (no fsync: a killed process loses nothing written; a
    /// power cut may, until `finish`), once the file and its names are durable.
    fn write_out(&mut self) -> Result<(), RecordError> {
        self.check()?;
        if let Some(dir) = self.unsynced.take() {
            if let Err(source) = self.file.sync_all().and_then(|()| sync_dir(&dir)) {
                self.failed = true;
                return Err(self.io_error(source));
            }
        }
        self.write_buffer()
    }

    /// Writes the buffer to the file and the running hash, names durable or not.
    fn write_buffer(&mut self) -> Result<(), RecordError> {
        self.check()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all(&self.buf) {
            self.failed = true;
            return Err(self.io_error(source));
        }
        self.hasher.update(&self.buf);
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn io_error(&self, source: std::io::Error) -> RecordError {
        RecordError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (a panic, a task cancelled) writes what it has; the
    /// `.open` marker stays, so the next start seals it as recovered.
    fn drop(&mut self) {
        if !self.sealed && !self.failed && !self.buf.is_empty() {
            let _ = self.write_out();
        }
    }
}

/// The header line (no newline).
fn header_json(h: &RecordingHeader, timestamp: i64) -> String {
    json!({
        "version": 2,
        "width": h.width,
        "height": h.height,
        "timestamp": timestamp,
        "title": h.title,
        "env": {
            "TERM": h.term.as_deref().unwrap_or(if h.pty { "xterm-256color" } else { "dumb" }),
            "SHELL": "/bin/sh",
        },
        "gatehouse": {
            "session_id": h.session_id,
            "identity": h.identity,
            "serial": h.serial,
            "target": h.target,
            "upstream_user": h.upstream_user,
            "client": h.client,
            "channel": h.channel,
            "pty": h.pty,
        },
    })
    .to_string()
}

/// A file-name part: `[A-Za-z0-9._-]` only (anything else becomes `-`), at most
/// [`MAX_NAME_PART`] characters, never empty or all dots.
fn name_part(s: &str) -> String {
    let part: String = s
        .chars()
        .take(MAX_NAME_PART)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if part.chars().all(|c| c == '.') {
        "unknown".to_string()
    } else {
        part
    }
}

/// fsyncs a directory so the names created in it survive a power cut.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `dir` (0750: the recordings' owner and group only) and its parents unless it exists.
fn make_dir(dir: &Path) -> Result<(), RecordError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

/// An I/O error on `path`.
fn io_err(path: &Path, source: std::io::Error) -> RecordError {
    RecordError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
#[path = "cast/tests.rs"]
pub(crate) mod tests;
