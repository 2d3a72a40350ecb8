//! One exec's recording as the gateway sees it: a [`Recorder`] shared by the bridge's writer
//! and the exec flow, a 1 s flush timer, and the fail-closed rule for recordings that cannot
//! be written.
//!
//! With `on_failure = "refuse"` (the default) a recording that cannot be created refuses the
//! exec, and one that fails mid-way ends it; with `"continue"` the exec goes on unrecorded and
//! the audit log says so loudly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::AuditLog;
use crate::config::OnRecordingFailure;
use crate::record::cast::{Recorder, RecordingHeader};

/// A live recording, or the record of why there is none.
#[derive(Clone)]
pub struct ExecRecording {
    /// `None` once finished, failed, or when recording was not possible and allowed to fail.
    recorder: Arc<Mutex<Option<Recorder>>>,
    /// Whether a write failure must end the exec.
    fail_closed: bool,
    /// Set once a write failed: with `fail_closed`, every later write reports failure too, so
    /// nothing is sent unrecorded after the first error.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// Receives `recording.sealed` (from the recorder) and `recording.failed`.
    audit: Arc<AuditLog>,
}

/// A recording that must exist could not be created.
#[derive(Debug, thiserror::Error)]
#[error("recording unavailable: {0}")]
pub struct RecordingUnavailable(pub String);

impl ExecRecording {
    /// Starts the recording of one exec; `Err` means the exec must be refused.
    pub fn start(
        root: &std::path::Path,
        header: &RecordingHeader,
        on_failure: OnRecordingFailure,
        audit: Arc<AuditLog>,
    ) -> Result<ExecRecording, RecordingUnavailable> {
        let fail_closed = on_failure == OnRecordingFailure::Refuse;
        let recorder = match Recorder::create(root, header) {
            Ok(r) => Some(r),
            Err(err) => {
                tracing::error!(error = %err, "cannot create the recording");
                let _ = audit.append(
                    "recording.failed",
                    serde_json::json!({
                        "session_id": header.session_id,
                        "identity": header.identity,
                        "target": header.target,
                        "error": err.to_string(),
                        "continued": !fail_closed,
                    }),
                );
                if fail_closed {
                    return Err(RecordingUnavailable(err.to_string()));
                }
                None
            }
        };
        let rec = ExecRecording {
            recorder: Arc::new(Mutex::new(recorder)),
            fail_closed,
            failed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            audit,
        };
        rec.spawn_flusher();
        Ok(rec)
    }

    /// Flushes buffered events at least once a second while the recording is open.
    fn spawn_flusher(&self) {
        let weak = Arc::downgrade(&self.recorder);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(recorder) = weak.upgrade() else {
                    return;
                };
                let Ok(mut guard) = recorder.lock() else {
                    return;
                };
                match guard.as_mut() {
                    Some(r) => {
                        let _ = r.flush_if_due();
                    }
                    None => return,
                }
            }
        });
    }

    /// Applies `f` to the recorder; returns false when the exec must end (fail closed).
    fn with(
        &self,
        f: impl FnOnce(&mut Recorder) -> Result<(), crate::record::cast::RecordError>,
    ) -> bool {
        let Ok(mut guard) = self.recorder.lock() else {
            return !self.fail_closed;
        };
        let Some(recorder) = guard.as_mut() else {
            return !(self.fail_closed && self.failed.load(std::sync::atomic::Ordering::SeqCst));
        };
        match f(recorder) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(error = %err, "recording write failed");
                let _ = self.audit.append(
                    "recording.failed",
                    serde_json::json!({ "error": err.to_string(), "continued": !self.fail_closed }),
                );
                *guard = None;
                self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                !self.fail_closed
            }
        }
    }

    /// Records output bytes (stdout and stderr alike, as terminals show them).
    pub fn output(&self, bytes: &[u8]) -> bool {
        self.with(|r| r.output(bytes))
    }

    /// Records agent input (only called when input recording is on).
    pub fn input(&self, bytes: &[u8]) -> bool {
        self.with(|r| r.input(bytes))
    }

    /// Records a marker (commands, decisions, approvals).
    pub fn marker(&self, label: &str) -> bool {
        self.with(|r| r.marker(label))
    }

    /// Records a terminal resize.
    pub fn resize(&self, cols: u32, rows: u32) -> bool {
        let cols = u16::try_from(cols).unwrap_or(u16::MAX);
        let rows = u16::try_from(rows).unwrap_or(u16::MAX);
        self.with(|r| r.resize(cols, rows))
    }

    /// Seals the recording (exit event, fsync, `recording.sealed` in the audit log) off the
    /// async threads.
    pub async fn finish(&self, exit_status: Option<u32>) {
        let recorder = match self.recorder.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        let Some(recorder) = recorder else {
            return;
        };
        let audit = self.audit.clone();
        let status = exit_status.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let sealed = tokio::task::spawn_blocking(move || recorder.finish(status, &audit)).await;
        match sealed {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "cannot seal the recording"),
            Err(err) => tracing::error!(error = %err, "sealing task failed"),
        }
    }
}
