//! One exec's recording as the gateway sees it. The bridge and the exec flow hand events to a
//! bounded queue; a writer task owns the [`Recorder`] and hands the events to the blocking pool
//! in batches, where they are encoded, hashed and written, so none of that work runs on the
//! threads of the data path (a chunk of output costs the bridge one queue send). The writer
//! also flushes a quiet recording once a second.
//!
//! Fail closed: with `on_failure = "refuse"` (the default) a recording that cannot be created
//! refuses the exec, and once a write fails every later event is refused, which ends the exec.
//! Output queued or gathered when the write failed (at most [`QUEUE_EVENTS`] chunks plus
//! [`WRITE_BYTES`]) may have reached the agent, the lag any buffered writer has. With
//! `"continue"` the exec goes on unrecorded and the audit log says so loudly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::sealer::Sealer;
use crate::audit::AuditLog;
use crate::config::OnRecordingFailure;
use crate::record::cast::{
    Closed, RecordError, Recorder, RecordingHeader, RecordingName, Reservation, SpareFiles,
    FLUSH_BYTES, FLUSH_INTERVAL,
};

/// Events queued per recording at most. Output and input events carry one SSH packet's data
/// (at most 32 KiB, plus what the masker held back), so the queue holds a few MiB at most.
pub const QUEUE_EVENTS: usize = 64;

/// One thing to record, stamped when it happened.
enum Event {
    Output(Bytes, Instant),
    Input(Bytes, Instant),
    Marker(String, Instant),
    Resize(u16, u16, Instant),
    /// Seal the recording; the answer comes once the seal is in the audit log (or failed).
    Finish(Option<i32>, oneshot::Sender<()>),
}

/// A live recording, or the record of why there is none. Clones share the recording.
#[derive(Clone)]
pub struct ExecRecording {
    /// Events to the writer task; `None` when the recording could not be created and
    /// `on_failure = "continue"` lets the exec run unrecorded.
    events: Option<mpsc::Sender<Event>>,
    /// Whether a write failure must end the exec.
    fail_closed: bool,
    /// Set by the writer once a write failed: with `fail_closed`, every later event is refused,
    /// so nothing is sent unrecorded once the failure is known.
    failed: Arc<AtomicBool>,
}

/// A recording that must exist could not be created.
#[derive(Debug, thiserror::Error)]
#[error("recording unavailable: {0}")]
pub struct RecordingUnavailable(pub String);

impl ExecRecording {
    /// Creates the files of one exec's recording when none were claimed ahead (blocking file
    /// work: call it off the async threads). The fsyncs that make them durable come with the
    /// writer's first write ([`Recorder::create_deferred`]).
    pub fn create(root: &std::path::Path, header: &RecordingHeader) -> Result<Recorder, String> {
        Recorder::create_deferred(root, header).map_err(|e| e.to_string())
    }

    /// Starts the recording of one exec from its [`ExecRecording::create`]d files; `Err` means
    /// the exec must be refused.
    pub async fn begin(
        created: Result<Recorder, String>,
        header: &RecordingHeader,
        on_failure: OnRecordingFailure,
        audit: Arc<AuditLog>,
        sealer: Sealer,
    ) -> Result<ExecRecording, RecordingUnavailable> {
        let fail_closed = on_failure == OnRecordingFailure::Refuse;
        let failed = Arc::new(AtomicBool::new(false));
        let recorder = match created {
            Ok(recorder) => recorder,
            Err(err) => {
                tracing::error!(error = %err, "cannot create the recording");
                let fields = serde_json::json!({
                    "session_id": header.session_id,
                    "identity": header.identity,
                    "target": header.target,
                    "error": err,
                    "continued": !fail_closed,
                });
                audit_failure(audit, fields).await;
                if fail_closed {
                    return Err(RecordingUnavailable(err));
                }
                return Ok(ExecRecording {
                    events: None,
                    fail_closed,
                    failed,
                });
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS);
        tokio::spawn(write_loop(
            Box::new(recorder),
            rx,
            failed.clone(),
            audit,
            sealer,
            fail_closed,
        ));
        Ok(ExecRecording {
            events: Some(tx),
            fail_closed,
            failed,
        })
    }

    /// False once the exec must end because its recording failed.
    fn usable(&self) -> bool {
        !(self.fail_closed && self.failed.load(Ordering::SeqCst))
    }

    /// Whether the exec must end because its recording failed (fail closed).
    pub fn failed(&self) -> bool {
        !self.usable()
    }

    /// Queues an event (waiting while the queue is full: a slow disk slows the exec); false
    /// when the exec must end (fail closed).
    async fn send(&self, event: Event) -> bool {
        if !self.usable() {
            return false;
        }
        match &self.events {
            // The writer is gone: finished (fine) or failed (usable says which).
            Some(tx) => tx.send(event).await.is_ok() || self.usable(),
            None => true,
        }
    }

    /// Records output bytes (stdout and stderr alike, as terminals show them).
    pub async fn output(&self, bytes: Bytes) -> bool {
        self.send(Event::Output(bytes, Instant::now())).await
    }

    /// Records agent input (only called when input recording is on).
    pub async fn input(&self, bytes: Bytes) -> bool {
        self.send(Event::Input(bytes, Instant::now())).await
    }

    /// Records a marker (commands, decisions, approvals).
    pub async fn marker(&self, label: &str) -> bool {
        self.send(Event::Marker(label.to_owned(), Instant::now()))
            .await
    }

    /// Records a terminal resize.
    pub async fn resize(&self, cols: u32, rows: u32) -> bool {
        let cols = u16::try_from(cols).unwrap_or(u16::MAX);
        let rows = u16::try_from(rows).unwrap_or(u16::MAX);
        self.send(Event::Resize(cols, rows, Instant::now())).await
    }

    /// Seals the recording (exit event, fsync, `recording.sealed` in the audit log) after
    /// everything queued before it, and waits until that is done. The seal may wait a moment
    /// for others to share its disk flushes (see `sealer`).
    pub async fn finish(&self, exit_status: Option<u32>) {
        let Some(tx) = &self.events else {
            return;
        };
        let status = exit_status.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let (reply, sealed) = oneshot::channel();
        if tx.send(Event::Finish(status, reply)).await.is_ok() {
            let _ = sealed.await;
        }
    }
}

/// The recording files claimed for a channel's exec while the agent is still sending the
/// requests before it (see [`Reservation`]). Dropped unused, it removes them off the async
/// threads.
pub struct Claim(Option<tokio::task::JoinHandle<Result<Reservation, RecordError>>>);

impl Claim {
    /// Claims, on the blocking pool, the files of the recording this channel's exec will have
    /// (one of `spares`, the gateway's spare files under `root`, when one is ready).
    pub fn start(
        root: std::path::PathBuf,
        spares: Option<Arc<SpareFiles>>,
        identity: String,
        target: String,
        session_id: String,
        channel: u32,
    ) -> Claim {
        Claim(Some(tokio::task::spawn_blocking(move || {
            let name = RecordingName {
                identity: &identity,
                target: &target,
                session_id: &session_id,
                channel,
            };
            Reservation::claim(&root, &name, spares.as_deref())
        })))
    }

    /// The claimed files, once claimed; `None` if that failed.
    pub async fn take(mut self) -> Option<Reservation> {
        let claimed = self.0.take()?.await;
        match claimed {
            Ok(Ok(reservation)) => Some(reservation),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not claim the recording's files ahead of the exec");
                None
            }
            Err(_) => None,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let (Some(claiming), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            if let Ok(Ok(reservation)) = claiming.await {
                let _ = tokio::task::spawn_blocking(move || drop(reservation)).await;
            }
        });
    }
}

/// Output and input bytes gathered before the writer hands them to the blocking pool: one
/// hand-off per this much output rather than one per chunk. It is also the asciicast flush
/// size: the recorder writes its event lines out whenever they reach [`FLUSH_BYTES`].
pub const WRITE_BYTES: usize = FLUSH_BYTES;

/// Owns the recorder until the recording is closed and sealed, fails, or every sender is gone
/// (an exec task that ended without sealing: the recorder's `Drop` writes what it has and the
/// `.open` marker makes the next start seal it).
///
/// Events are only gathered here, on the async threads; encoding them (JSON escaping, which
/// grows NUL-heavy output sixfold), hashing and writing all run in one job on the blocking
/// pool once [`WRITE_BYTES`] of output have come, at every tick of [`FLUSH_INTERVAL`] that
/// finds events waiting, and at the seal. That keeps the recording's CPU off the threads that
/// run the data path, so it runs beside it on another core. While a job runs, new events wait
/// in the bounded queue, and a full queue slows the exec: a slow disk slows the agent, never
/// grows memory.
async fn write_loop(
    recorder: Box<Recorder>,
    mut rx: mpsc::Receiver<Event>,
    failed: Arc<AtomicBool>,
    audit: Arc<AuditLog>,
    sealer: Sealer,
    fail_closed: bool,
) {
    // `None` once a write failed and `on_failure = "continue"` let the exec go on unrecorded.
    let mut recorder = Some(recorder);
    // The first tick one interval from now, not at once (`interval`'s default): an exec that
    // ends within the second is written in one job, at its seal.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_INTERVAL, FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(QUEUE_EVENTS);
    let mut pending: Vec<Event> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut due = false;
    loop {
        if due || pending_bytes >= WRITE_BYTES {
            due = false;
            pending_bytes = 0;
            let mut events = std::mem::take(&mut pending);
            let Some(open) = recorder.take() else {
                continue;
            };
            if let Some((status, reply)) = take_finish(&mut events) {
                // The last events, the exit event and the seal, all in the seal's batch job.
                let path = open.path().to_path_buf();
                let sealed = sealer
                    .seal(&path, move || close(open, events, status))
                    .await;
                match sealed {
                    Ok(_) => {}
                    // The audit log itself failed: there is nowhere to say so but the log.
                    Err(err @ RecordError::Audit { .. }) => {
                        tracing::error!(error = %err, "cannot seal the recording");
                    }
                    // The recording keeps its marker; the next start seals it as recovered.
                    Err(err) => {
                        tracing::error!(error = %err, "cannot seal the recording");
                        let fields =
                            serde_json::json!({ "error": err.to_string(), "sealed": false });
                        audit_failure(audit.clone(), fields).await;
                    }
                }
                let _ = reply.send(());
                return;
            }
            let written = tokio::task::spawn_blocking(move || write(open, events)).await;
            let err = match written {
                Ok(Ok(open)) => {
                    recorder = Some(open);
                    continue;
                }
                Ok(Err(err)) => err.to_string(),
                Err(err) => format!("recording task failed: {err}"),
            };
            fail(&failed, &audit, fail_closed, err).await;
            if fail_closed {
                return;
            }
        }
        tokio::select! {
            received = rx.recv_many(&mut batch, QUEUE_EVENTS) => {
                if received == 0 {
                    // Every sender is gone without a seal: record what came, then the
                    // recorder's `Drop` writes it (and may fsync), off the async threads.
                    if let Some(mut open) = recorder.take() {
                        let events = std::mem::take(&mut pending);
                        let _ = tokio::task::spawn_blocking(move || {
                            let _ = encode(&mut open, events);
                            drop(open);
                        })
                        .await;
                    }
                    return;
                }
            }
            _ = tick.tick() => {
                due = !pending.is_empty();
                continue;
            }
        }
        for event in batch.drain(..) {
            match event {
                Event::Finish(_, reply) if recorder.is_none() => {
                    // Failed earlier and allowed to continue: there is nothing to seal.
                    let _ = reply.send(());
                    return;
                }
                _ if recorder.is_none() => {}
                event => {
                    match &event {
                        Event::Output(bytes, _) | Event::Input(bytes, _) => {
                            pending_bytes += bytes.len();
                        }
                        Event::Finish(..) => due = true,
                        Event::Marker(..) | Event::Resize(..) => {}
                    }
                    pending.push(event);
                }
            }
        }
    }
}

/// Records that the recording failed: log, `failed` for the senders, audit record.
async fn fail(failed: &AtomicBool, audit: &Arc<AuditLog>, fail_closed: bool, err: String) {
    tracing::error!(error = %err, "recording write failed");
    failed.store(true, Ordering::SeqCst);
    let fields = serde_json::json!({ "error": err, "continued": !fail_closed });
    audit_failure(audit.clone(), fields).await;
}

/// Appends `recording.failed` off the async threads. The session is refused or goes on
/// unrecorded either way; if even the audit log fails, the log line is what is left.
async fn audit_failure(audit: Arc<AuditLog>, fields: serde_json::Value) {
    let appended =
        tokio::task::spawn_blocking(move || audit.append("recording.failed", fields)).await;
    if !matches!(appended, Ok(Ok(_))) {
        tracing::error!("the recording failure could not be written to the audit log");
    }
}

/// Encodes `events` in order and writes them (the recorder writes every [`FLUSH_BYTES`] of
/// event lines, then what is left). Blocking: file writes.
fn write(mut recorder: Box<Recorder>, events: Vec<Event>) -> Result<Box<Recorder>, RecordError> {
    encode(&mut recorder, events)?;
    recorder.write_pending()?;
    Ok(recorder)
}

/// Encodes the last `events` and closes the recording (the exit event, the rest of the buffer
/// written), ready for the seal. Blocking: file writes; runs in the seal's batch job.
fn close(
    mut recorder: Box<Recorder>,
    events: Vec<Event>,
    status: Option<i32>,
) -> Result<Closed, RecordError> {
    encode(&mut recorder, events)?;
    recorder.close(status)
}

/// A request to seal: the exit status, and who waits for the seal.
type Seal = (Option<i32>, oneshot::Sender<()>);

/// Takes the `Finish` out of `events`, if there is one, with everything after it (nothing is
/// recorded after the seal was asked for).
fn take_finish(events: &mut Vec<Event>) -> Option<Seal> {
    let at = events.iter().position(|e| matches!(e, Event::Finish(..)))?;
    match events.drain(at..).next() {
        Some(Event::Finish(status, reply)) => Some((status, reply)),
        _ => None,
    }
}

/// Encodes `events` in order (a `Finish` among them is skipped: see [`take_finish`]).
fn encode(recorder: &mut Recorder, events: Vec<Event>) -> Result<(), RecordError> {
    for event in events {
        match event {
            Event::Output(bytes, at) => recorder.output_at(&bytes, at)?,
            Event::Input(bytes, at) => recorder.input_at(&bytes, at)?,
            Event::Marker(label, at) => recorder.marker_at(&label, at)?,
            Event::Resize(cols, rows, at) => recorder.resize_at(cols, rows, at)?,
            Event::Finish(..) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::cast::tests::header;

    /// The `.cast` file under `root` (one day directory, one recording).
    fn cast_file(root: &std::path::Path) -> std::path::PathBuf {
        let day = std::fs::read_dir(root)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::read_dir(day)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "cast"))
            .unwrap()
    }

    /// Output followed by silence reaches the file through the writer's once-a-second flush,
    /// with no further event and no seal to push it; the seal then comes after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quiet_output_is_written_within_the_flush_interval_and_sealed_last() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let root = dir.path().join("recordings");
        let created = ExecRecording::create(&root, &header());
        let recording = ExecRecording::begin(
            created,
            &header(),
            OnRecordingFailure::Refuse,
            audit.clone(),
            Sealer::start(audit.clone(), None),
        )
        .await
        .unwrap();
        assert!(recording.marker("cmd: tail -f app.log").await);
        let cast = cast_file(&root);
        // Twice: the first goes out with the writer's first tick, the second needs a later one.
        for line in ["one quiet line", "another quiet line"] {
            let output = Bytes::from(format!("{line}\n"));
            assert!(recording.output(output).await);
            let deadline = Instant::now() + FLUSH_INTERVAL * 10;
            while !std::fs::read_to_string(&cast).unwrap().contains(line) {
                assert!(Instant::now() < deadline, "{line:?} never reached {cast:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let marker = cast.with_extension("cast.open");
        assert!(marker.exists(), "sealed before finish");

        recording.finish(Some(0)).await;
        let text = std::fs::read_to_string(&cast).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last[1], "x", "{text}");
        assert!(!marker.exists(), "still unsealed after finish");
    }
}
