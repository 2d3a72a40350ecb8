//! Graceful shutdown, drawn once (after tokio-rs/mini-redis): a notice every open exec hears,
//! and a channel whose last sender dropping means "every exec has sealed its recording".
//!
//! Each exec task holds a [`ShutdownListener`] for as long as it runs. When the gateway stops,
//! [`Shutdown::drain`] raises the notice, drops its own sender and waits — up to a grace
//! period — until every listener is gone. An exec that hears the notice drops whatever it was
//! doing and calls [`cut_off`]: session-end marker, seal, then a word to the agent.
//!
//! The notice is a `watch` rather than a `broadcast`: a task that starts listening after the
//! notice was raised still sees it, so no exec can start unnoticed during shutdown.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::channel::ChannelContext;
use super::recording::ExecRecording;

/// Told to the agent (and recorded) when gatehouse stops while its command is open.
const SHUTDOWN_LINE: &str = "gatehouse: shutting down; the command was cut off\n";
/// The session-end marker of an exec cut off by shutdown.
pub const SHUTDOWN_MARKER: &str = "session end: gatehouse shutting down";
/// How long telling a cut-off agent may take; its connection may be too slow to read it.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long shutdown waits for open execs to seal their recordings before exiting anyway
/// (a recording still open then is repaired and sealed at the next start).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The gateway-wide shutdown notice and the count of execs still running.
pub struct Shutdown {
    /// `true` once shutdown began; every listener watches it.
    notice: watch::Sender<bool>,
    /// Cloned into every listener; taken (dropped) by [`Shutdown::drain`], after which the
    /// receiver ends once the last listener is gone.
    running: Mutex<Option<mpsc::Sender<()>>>,
    /// Yields `None` when every sender is dropped: every exec has finished.
    all_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// No shutdown yet, nothing running.
    pub fn new() -> Shutdown {
        let (notice, _) = watch::channel(false);
        // Nothing is ever sent: the channel only counts its senders.
        let (running, all_done) = mpsc::channel(1);
        Shutdown {
            notice,
            running: Mutex::new(Some(running)),
            all_done: tokio::sync::Mutex::new(all_done),
        }
    }

    /// A listener for one exec; drain waits until it is dropped. Check
    /// [`ShutdownListener::is_shutdown`] before starting work: a listener taken after the drain
    /// began is not waited for.
    pub fn listen(&self) -> ShutdownListener {
        // The sender is cloned before the notice is read; drain raises the notice before it
        // takes the sender. So either this listener is counted, or it sees the notice.
        let running = self.running.lock().ok().and_then(|guard| guard.clone());
        ShutdownListener {
            notice: self.notice.subscribe(),
            _running: running,
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.notice.borrow()
    }

    /// Raises the notice and waits until every listener is dropped, or `grace` has passed.
    /// Returns whether everything finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.notice.send_replace(true);
        if let Ok(mut running) = self.running.lock() {
            running.take();
        }
        let mut all_done = self.all_done.lock().await;
        tokio::time::timeout(grace, all_done.recv()).await.is_ok()
    }
}

/// Held by one running exec: hears the shutdown notice, and keeps shutdown waiting while held.
pub struct ShutdownListener {
    /// The gateway's notice.
    notice: watch::Receiver<bool>,
    /// Counts this exec as running until dropped (`None` when taken after drain began).
    _running: Option<mpsc::Sender<()>>,
}

impl ShutdownListener {
    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.notice.borrow()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn notified(&mut self) {
        // An error means the gateway itself is gone, which is shutdown too.
        let _ = self.notice.wait_for(|down| *down).await;
    }
}

/// Ends an exec because the gateway is stopping (whatever it was doing has been dropped: a
/// wait for a reviewer, or the bridge). The recording gets the line the agent is told and the
/// session-end marker and is sealed first; only then does the agent hear why its channel
/// closes (no exit status: the command did not finish).
pub async fn cut_off(ctx: &ChannelContext, agent: russh::ChannelId, recording: &ExecRecording) {
    recording
        .output(bytes::Bytes::from_static(SHUTDOWN_LINE.as_bytes()))
        .await;
    recording.marker(SHUTDOWN_MARKER).await;
    ctx.seal(recording, None).await;
    tracing::info!("exec cut off by shutdown; recording sealed");
    let tell = async {
        let _ = ctx
            .handle
            .extended_data(agent, 1, SHUTDOWN_LINE.as_bytes().to_vec())
            .await;
        let _ = ctx.handle.eof(agent).await;
        let _ = ctx.handle.close(agent).await;
    };
    let _ = tokio::time::timeout(NOTICE_TIMEOUT, tell).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_listeners_and_late_listeners_see_the_notice() {
        let shutdown = std::sync::Arc::new(Shutdown::new());
        let mut early = shutdown.listen();
        assert!(!early.is_shutdown());
        let (sealed_tx, sealed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            early.notified().await;
            // Sealing happens here, before the listener drops.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = sealed_tx.send(());
            drop(early);
        });
        let drainer = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { shutdown.drain(Duration::from_secs(30)).await })
        };
        assert!(drainer.await.unwrap(), "drain finished within the grace");
        sealed_rx
            .await
            .expect("the listener finished before drain returned");
        let late = shutdown.listen();
        assert!(late.is_shutdown() && shutdown.is_shutdown());
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace() {
        let shutdown = Shutdown::new();
        let _stuck = shutdown.listen();
        assert!(!shutdown.drain(Duration::from_millis(100)).await);
    }
}
