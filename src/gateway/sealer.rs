//! Seals exec recordings in small batches (see `record::cast::seal`). A recording that ends
//! waits up to [`SEAL_WINDOW`] for others ending around it, so that back-to-back execs share
//! their directory fsyncs and the audit log's flush instead of paying three disk flushes each.
//! The seal comes after the agent has its exit status either way; what batching saves is the
//! flushes the next exec's decision record would queue behind, and CPU on a busy machine. Each
//! recording's last events are written in the same job, just before the seal: one hand-off to
//! the blocking pool per batch rather than one per exec more.
//!
//! An exec still waits for its own seal (its task, and the shutdown listener it holds, end
//! after it), so shutdown waits for every recording as before; its channel's place in the
//! connection's limit is given back before that wait (see `channel::ChannelSlot`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditLog;
use crate::record::cast::{seal_all, Closed, RecordError, SealedRecording, SpareFiles};

/// How long a seal waits for others to share its flushes. Execs that end back to back
/// (a few milliseconds apart) gather several per batch; a lone recording is sealed this much
/// later than it could be, long after its agent has moved on.
pub const SEAL_WINDOW: Duration = Duration::from_millis(20);
/// Recordings waiting to be sealed at most; a full queue makes ending execs wait (a slow disk
/// slows the agents, never grows memory).
pub const SEAL_QUEUE: usize = 256;
/// Recordings sealed in one batch at most.
pub const SEAL_BATCH: usize = 64;

/// Hands ending recordings to the batching task. Clones share it.
#[derive(Clone)]
pub struct Sealer {
    /// To the batching task.
    queue: mpsc::Sender<Sealing>,
    /// The log the seals go to, also for sealing alone if the task is gone.
    audit: Arc<AuditLog>,
}

/// Blocking work that ends a recording: its last events and exit event written.
type Closing = Box<dyn FnOnce() -> Result<Closed, RecordError> + Send>;

/// One recording to seal, and who waits for the outcome.
struct Sealing {
    closing: Closing,
    done: oneshot::Sender<Result<SealedRecording, RecordError>>,
}

impl Sealer {
    /// Starts the batching task (call inside the runtime). After each batch it restocks
    /// `spares`, the recordings' spare files, if given.
    pub fn start(audit: Arc<AuditLog>, spares: Option<Arc<SpareFiles>>) -> Sealer {
        let (queue, rx) = mpsc::channel(SEAL_QUEUE);
        tokio::spawn(seal_loop(rx, audit.clone(), spares));
        Sealer { queue, audit }
    }

    /// Ends the recording at `path` with `closing` (blocking: it writes the last events and
    /// returns the closed recording) and seals it, with whatever else ends within
    /// [`SEAL_WINDOW`]; returns once its seal is in the audit log, or failed (the recording
    /// then keeps its marker).
    pub async fn seal(
        &self,
        path: &Path,
        closing: impl FnOnce() -> Result<Closed, RecordError> + Send + 'static,
    ) -> Result<SealedRecording, RecordError> {
        let (done, outcome) = oneshot::channel();
        let sealing = Sealing {
            closing: Box::new(closing),
            done,
        };
        let lost = || RecordError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("its sealing job stopped before sealing it"),
        };
        let outcome = match self.queue.send(sealing).await {
            Ok(()) => outcome.await.ok(),
            // The task is gone (the runtime is stopping): seal this one alone.
            Err(mpsc::error::SendError(sealing)) => {
                let audit = self.audit.clone();
                tokio::task::spawn_blocking(move || close_and_seal(vec![sealing.closing], &audit))
                    .await
                    .ok()
                    .and_then(|mut outcomes| outcomes.pop())
                    .flatten()
            }
        };
        outcome.unwrap_or_else(|| Err(lost()))
    }
}

/// Gathers recordings for [`SEAL_WINDOW`] after the first of a batch, then seals them in one
/// job on the blocking pool; the next batch gathers while that one is on disk.
async fn seal_loop(
    mut rx: mpsc::Receiver<Sealing>,
    audit: Arc<AuditLog>,
    spares: Option<Arc<SpareFiles>>,
) {
    let mut batch = Vec::with_capacity(SEAL_BATCH);
    while rx.recv_many(&mut batch, SEAL_BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + SEAL_WINDOW;
        while batch.len() < SEAL_BATCH {
            let room = SEAL_BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let (closings, waiting): (Vec<Closing>, Vec<_>) =
            batch.drain(..).map(|s| (s.closing, s.done)).unzip();
        let log = audit.clone();
        let spares = spares.clone();
        let job = move || {
            let outcomes = close_and_seal(closings, &log);
            // A waiter left without an outcome (its sender dropped) reports its recording lost.
            for (done, outcome) in waiting.into_iter().zip(outcomes) {
                if let Some(outcome) = outcome {
                    let _ = done.send(outcome);
                }
            }
            // Once the waiters have heard: files for the next recordings, made while none is
            // waiting for them.
            if let Some(spares) = spares {
                if let Err(err) = spares.restock() {
                    tracing::warn!(error = %err, "cannot make spare recording files; recordings create their own");
                }
            }
        };
        if let Err(err) = tokio::task::spawn_blocking(job).await {
            tracing::error!(error = %err, "the sealing job failed; the recordings stay unsealed until the next start");
        }
    }
}

/// Runs every closing, then seals the recordings that closed (see [`seal_all`]); the outcomes
/// come back in the closings' order (`None` only if the seal lost one, which it does not).
fn close_and_seal(
    closings: Vec<Closing>,
    audit: &AuditLog,
) -> Vec<Option<Result<SealedRecording, RecordError>>> {
    let mut outcomes = Vec::with_capacity(closings.len());
    let mut closed = Vec::new();
    for closing in closings {
        match closing() {
            Ok(c) => {
                closed.push(c);
                outcomes.push(None);
            }
            Err(err) => outcomes.push(Some(Err(err))),
        }
    }
    let mut sealed = seal_all(closed, audit).into_iter();
    outcomes
        .into_iter()
        .map(|outcome| outcome.or_else(|| sealed.next()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::cast::tests::header;
    use crate::record::cast::Recorder;

    /// Recordings that end together are sealed in one batch: each gets its own seal record,
    /// every marker goes, and the log verifies against the files.
    #[tokio::test]
    async fn recordings_ending_together_are_sealed_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.log")).unwrap());
        let sealer = Sealer::start(audit.clone(), None);
        let mut waits = Vec::new();
        for channel in 0..5 {
            let mut h = header();
            h.channel = channel;
            let mut rec = Recorder::create_deferred(&root, &h).unwrap();
            rec.output(format!("output {channel}\n").as_bytes())
                .unwrap();
            let sealer = sealer.clone();
            waits.push(tokio::spawn(async move {
                let path = rec.path().to_path_buf();
                sealer.seal(&path, move || rec.close(Some(0))).await
            }));
        }
        let mut sealed = Vec::new();
        for wait in waits {
            sealed.push(wait.await.unwrap().unwrap());
        }
        for s in &sealed {
            assert!(s.path.exists());
            let marker = format!("{}.open", s.path.display());
            assert!(
                !std::path::Path::new(&marker).exists(),
                "marker left: {marker}"
            );
        }
        assert_eq!(audit.head().seq, 5, "one seal record each");
        let report = crate::audit::verify(audit.path(), Some(&root)).unwrap();
        assert_eq!(report.recordings, 5);
    }
}
