//! Sealing: making finished recordings durable and putting their hashes in the audit log,
//! several at a time.
//!
//! A recording is sealed in four steps, in this order: its file is fsynced, its directory is
//! fsynced (if the file's names were not durable yet), `recording.sealed` is written to the
//! audit log and flushed, and the `.open` marker is removed. The order is what makes a crash
//! safe: a seal record is never on disk before the bytes it hashes, and a recording whose seal
//! record may be lost still has its marker, so the next start seals it as recovered.
//!
//! Recordings that end close together are sealed together ([`seal_all`]): each file still
//! gets its own fsync, but a directory is fsynced once for all of them and the audit log is
//! flushed once for all their records. An exec's recording used to cost three disk flushes at
//! its seal; sealed with others, it costs one and a share of two.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest;

use super::{sync_dir, RecordError, Recorder, SealedRecording};
use crate::audit::{AuditLog, WrittenRecord, RECORDING_SEALED};

/// A recording whose every event, the exit event included, is written to its file: what is
/// left is to make it durable and seal it ([`seal_all`]). Dropped unsealed, it keeps its
/// `.open` marker, so the next start seals it as recovered.
pub struct Closed {
    /// The finished recorder: its buffer is empty, so its `Drop` writes nothing.
    recorder: Recorder,
    /// Hex SHA-256 of the whole file.
    sha256: String,
    /// The exit status its `x` event carries, repeated in the seal.
    exit_status: Option<i32>,
}

impl Closed {
    /// The `.cast` file.
    pub fn path(&self) -> &Path {
        &self.recorder.path
    }
}

impl Recorder {
    /// Ends the recording: writes any carried partial sequence (as U+FFFD), the `x` event when
    /// the exit status is known, and whatever is buffered. Nothing is fsynced yet and nothing
    /// is in the audit log: [`seal_all`] does that, for this recording and others.
    pub fn close(mut self, exit_status: Option<i32>) -> Result<Closed, RecordError> {
        let now = std::time::Instant::now();
        self.check()?;
        self.encoder.finish(&mut self.buf, now);
        if let Some(status) = exit_status {
            self.event("x", &status.to_string(), now)?;
        }
        self.write_buffer()?;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(Closed {
            recorder: self,
            sha256,
            exit_status,
        })
    }
}

/// Seals `closed` recordings together (see the module docs): every file fsynced, every
/// directory that holds a new name fsynced once, one `recording.sealed` record each, one flush
/// of the audit log, then the markers removed. Returns each recording's outcome, in order. A
/// recording that fails a step keeps its marker and is sealed as recovered at the next start.
pub fn seal_all(
    closed: Vec<Closed>,
    audit: &AuditLog,
) -> Vec<Result<SealedRecording, RecordError>> {
    let mut steps: Vec<Result<Closed, RecordError>> = closed.into_iter().map(sync_file).collect();
    sync_dirs(&mut steps);
    let written: Vec<Result<(Closed, WrittenRecord), RecordError>> = steps
        .into_iter()
        .map(|step| step.and_then(|c| write_seal(c, audit)))
        .collect();
    // The first sync flushes every record written above; the others find theirs on disk.
    written
        .into_iter()
        .map(|step| {
            let (mut c, record) = step?;
            audit
                .sync_through(&record)
                .map_err(|source| RecordError::Audit {
                    path: c.recorder.path.display().to_string(),
                    source,
                })?;
            Ok(sealed(&mut c))
        })
        .collect()
}

/// The file's data and size on disk.
fn sync_file(mut c: Closed) -> Result<Closed, RecordError> {
    match c.recorder.file.sync_all() {
        Ok(()) => Ok(c),
        Err(source) => {
            c.recorder.failed = true;
            Err(c.recorder.io_error(source))
        }
    }
}

/// fsyncs, once each, the directories in which files of `steps` got names not yet durable; a
/// recording whose directory fails is failed.
fn sync_dirs(steps: &mut [Result<Closed, RecordError>]) {
    // Each directory's outcome: `None` once fsynced, else the error (kind and text).
    let mut done: Vec<(PathBuf, Option<(std::io::ErrorKind, String)>)> = Vec::new();
    for step in steps.iter_mut() {
        let Ok(c) = step else { continue };
        let Some(dir) = c.recorder.unsynced.take() else {
            continue;
        };
        let outcome = match done.iter().find(|(d, _)| *d == dir) {
            Some((_, outcome)) => outcome.clone(),
            None => {
                let outcome = sync_dir(&dir).err().map(|e| (e.kind(), e.to_string()));
                done.push((dir.clone(), outcome.clone()));
                outcome
            }
        };
        if let Some((kind, text)) = outcome {
            c.recorder.failed = true;
            let err = c.recorder.io_error(std::io::Error::new(
                kind,
                format!("cannot fsync its directory {}: {text}", dir.display()),
            ));
            *step = Err(err);
        }
    }
}

/// Writes the seal record (not yet flushed).
fn write_seal(c: Closed, audit: &AuditLog) -> Result<(Closed, WrittenRecord), RecordError> {
    let r = &c.recorder;
    let record = audit
        .write(
            RECORDING_SEALED,
            json!({
                "path": r.relative,
                "size": r.size,
                "sha256": c.sha256,
                "events": r.encoder.events(),
                "exit_status": c.exit_status,
                "session_id": r.session_id,
                "channel": r.channel,
            }),
        )
        .map_err(|source| RecordError::Audit {
            path: r.path.display().to_string(),
            source,
        })?;
    Ok((c, record))
}

/// The seal is on disk: the marker goes (a leftover one would only make the next start seal
/// the recording again, which is harmless).
fn sealed(c: &mut Closed) -> SealedRecording {
    let r = &mut c.recorder;
    r.sealed = true;
    if let Err(e) = std::fs::remove_file(&r.open_marker) {
        tracing::warn!(path = %r.open_marker.display(), error = %e, "could not remove the unsealed-recording marker");
    }
    SealedRecording {
        path: r.path.clone(),
        relative: r.relative.clone(),
        size: r.size,
        sha256: c.sha256.clone(),
        events: r.encoder.events(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::cast::tests::header;
    use crate::record::cast::{recover_unsealed, RecordingHeader};

    /// Three recordings of one session, closed and ready to seal, under `root`.
    fn closed_three(root: &Path) -> Vec<Closed> {
        (1..=3)
            .map(|channel| {
                let h = RecordingHeader {
                    channel,
                    ..header()
                };
                let mut rec = Recorder::create_deferred(root, &h).unwrap();
                rec.output(format!("channel {channel}\n").as_bytes())
                    .unwrap();
                rec.close(Some(0)).unwrap()
            })
            .collect()
    }

    fn marker_of(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}.open", path.display()))
    }

    #[test]
    fn a_batch_gets_one_record_each_in_order_and_no_marker_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
        let closed = closed_three(&root);
        let paths: Vec<PathBuf> = closed.iter().map(|c| c.path().to_path_buf()).collect();

        let sealed: Vec<SealedRecording> = seal_all(closed, &audit)
            .into_iter()
            .map(Result::unwrap)
            .collect();

        assert_eq!(
            sealed.iter().map(|s| &s.path).collect::<Vec<_>>(),
            paths.iter().collect::<Vec<_>>()
        );
        for path in &paths {
            assert!(!marker_of(path).exists(), "{path:?} kept its marker");
        }
        let records: Vec<_> = crate::audit::export(audit.path(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let channels: Vec<_> = records
            .iter()
            .map(|r| r.fields["channel"].clone())
            .collect();
        assert_eq!(channels, [1, 2, 3]);
        assert_eq!(
            crate::audit::verify(audit.path(), Some(&root))
                .unwrap()
                .recordings,
            3
        );
    }

    /// Fail closed: when the audit log cannot take the seals, no recording loses its marker,
    /// and the next start seals every one of them as recovered.
    #[test]
    fn a_batch_the_audit_log_refuses_keeps_every_marker_for_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let log_path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&log_path).unwrap();
        let closed = closed_three(&root);
        let paths: Vec<PathBuf> = closed.iter().map(|c| c.path().to_path_buf()).collect();
        audit.poison();

        for outcome in seal_all(closed, &audit) {
            assert!(matches!(outcome, Err(RecordError::Audit { .. })));
        }
        for path in &paths {
            assert!(path.exists() && marker_of(path).exists(), "{path:?}");
        }
        drop(audit);

        let audit = AuditLog::open(&log_path).unwrap();
        let mut recovered = recover_unsealed(&root, &audit).unwrap();
        recovered.sort();
        assert_eq!(recovered, paths);
        assert_eq!(
            crate::audit::verify(audit.path(), Some(&root))
                .unwrap()
                .recordings,
            3
        );
    }
}
