//! The interactive reviewer console: `ssh -t console@bastion` with a reviewer's certificate.
//! One task per console channel runs a `gatehouse_tui::ConsoleApp` and carries out what it
//! asks (approve, deny, open a recording); a second task only reads the channel and passes
//! keys and resizes on over a bounded queue.
//!
//! The screen is refreshed without a keypress: at once when the approvals broadcast says a
//! request changed, once a second for ages, live sessions and expiries, and every few seconds
//! for the recordings list. Approve and deny run [`run_console_words`], the very code behind
//! `ssh console approve ID`: same reviewer checks, same store, same audit events. Store and
//! disk reads run in `spawn_blocking`. `q`, Ctrl-C or the client closing end the console: the
//! alternate screen is left, exit status 0, EOF, close.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_tui::{enter_screen, leave_screen, Action, ConsoleApp, ReplayApp};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::{broadcast, mpsc, Mutex};

use super::console_data::{pending_items, session_items, RecordingIndex};
use super::Gateway;
use crate::approvals::run_console_words;
use crate::identity::ca::CertIdentity;

/// Reads from the reviewer's terminal queued for the screen; the reader waits when it is full.
const INPUT_QUEUE: usize = 64;
/// Ticks while nothing plays: ages, live sessions, expiries.
const SLOW_TICK: Duration = Duration::from_secs(1);
/// Ticks while a replay plays (about 30 frames a second).
const FAST_TICK: Duration = Duration::from_millis(33);
/// How often the recordings directory is read again.
const RECORDINGS_EVERY: Duration = Duration::from_secs(5);
/// Console screens open at once, gateway-wide (each holds up to one replayed recording).
pub const MAX_SCREENS: usize = 64;
/// Terminal sizes are clamped to this: a frame allocates columns × rows cells.
const MAX_COLS: u32 = 500;
const MAX_ROWS: u32 = 300;

/// Screens open now, against [`MAX_SCREENS`].
static OPEN_SCREENS: AtomicUsize = AtomicUsize::new(0);

/// What the reader task passes on.
enum Input {
    /// Bytes the reviewer typed.
    Keys(Vec<u8>),
    /// The terminal was resized (columns, rows).
    Resize(u16, u16),
}

/// A terminal size from a pty-req or window-change, clamped to something drawable.
pub fn terminal_size(cols: u32, rows: u32) -> (u16, u16) {
    let clamp = |v: u32, max: u32| u16::try_from(v.clamp(1, max)).unwrap_or(1);
    (clamp(cols, MAX_COLS), clamp(rows, MAX_ROWS))
}

/// Counts one open screen until dropped.
struct ScreenSlot;

impl ScreenSlot {
    fn take() -> Option<ScreenSlot> {
        if OPEN_SCREENS.fetch_add(1, Ordering::SeqCst) >= MAX_SCREENS {
            OPEN_SCREENS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ScreenSlot)
    }
}

impl Drop for ScreenSlot {
    fn drop(&mut self) {
        OPEN_SCREENS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the console on a channel that asked for a shell (with a pty of `size`) until the
/// reviewer quits or the client goes away.
pub async fn run(
    gateway: Arc<Gateway>,
    reviewer: CertIdentity,
    channel: Channel<Msg>,
    size: (u16, u16),
) {
    let (mut read, write) = channel.split();
    // Same check as the exec commands: a reviewer group (also checked at login).
    let approvals = gateway.approvals.clone();
    let who = reviewer.clone();
    let allowed = tokio::task::spawn_blocking(move || approvals.is_reviewer(&who))
        .await
        .unwrap_or(false);
    if !allowed {
        let line = format!(
            "gatehouse: {} is not in a reviewer group\r\n",
            reviewer.identity
        );
        end(&write, Some(line), super::channel::EXIT_REFUSED).await;
        return;
    }
    let Some(_slot) = ScreenSlot::take() else {
        let line = "gatehouse: too many consoles open; try again later\r\n".to_string();
        end(&write, Some(line), super::channel::EXIT_REFUSED).await;
        return;
    };
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let reader = tokio::spawn(async move {
        while let Some(msg) = read.wait().await {
            let input = match msg {
                ChannelMsg::Data { data } => Input::Keys(data.to_vec()),
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    ..
                } => {
                    let (c, r) = terminal_size(col_width, row_height);
                    Input::Resize(c, r)
                }
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => continue,
            };
            if tx.send(input).await.is_err() {
                break;
            }
        }
        // Dropping `tx` tells the screen the client is gone.
    });
    tracing::info!(reviewer = %reviewer.identity, "console opened");
    let mut screen = Screen {
        app: ConsoleApp::new(size),
        recordings: Arc::new(Mutex::new(RecordingIndex::new(
            &gateway.config.server.recordings_dir,
        ))),
        gateway,
        reviewer,
    };
    screen.app.set_reviewer(screen.reviewer.identity.clone());
    let how = screen.serve(&write, rx).await;
    reader.abort();
    tracing::info!(reviewer = %screen.reviewer.identity, ended = how, "console closed");
    let _ = write.data_bytes(leave_screen().to_vec()).await;
    end(&write, None, 0).await;
}

/// Exit status, EOF and close, after an optional stderr line.
async fn end(write: &ChannelWriteHalf<Msg>, line: Option<String>, status: u32) {
    if let Some(line) = line {
        let _ = write.extended_data_bytes(1, line.into_bytes()).await;
    }
    let _ = write.exit_status(status).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// One reviewer's console.
struct Screen {
    /// The screens; knows nothing of SSH or storage.
    app: ConsoleApp,
    /// Where pending requests, live sessions and recordings come from.
    gateway: Arc<Gateway>,
    /// Who decides: the verified certificate.
    reviewer: CertIdentity,
    /// The recordings list and the only paths a replay may open; moved into blocking tasks.
    recordings: Arc<Mutex<RecordingIndex>>,
}

impl Screen {
    /// The event loop; returns how it ended (for the log).
    async fn serve(
        &mut self,
        write: &ChannelWriteHalf<Msg>,
        mut input: mpsc::Receiver<Input>,
    ) -> &'static str {
        let mut events = self.gateway.approvals.subscribe();
        let mut events_open = true;
        if write.data_bytes(enter_screen().to_vec()).await.is_err() {
            return "client gone";
        }
        self.refresh_pending().await;
        self.refresh_sessions();
        self.refresh_recordings().await;
        let mut next_slow = Instant::now() + SLOW_TICK;
        let mut next_recordings = Instant::now() + RECORDINGS_EVERY;
        loop {
            let now = Instant::now();
            self.app.tick(now);
            if now >= next_slow {
                next_slow = now + SLOW_TICK;
                self.refresh_sessions();
                // Also catches expiries, which send no event until someone looks.
                self.refresh_pending().await;
            }
            if now >= next_recordings {
                next_recordings = now + RECORDINGS_EVERY;
                self.refresh_recordings().await;
            }
            let frame = self.app.render();
            if !frame.is_empty() && write.data_bytes(frame).await.is_err() {
                return "client gone";
            }
            let wait = if self.app.wants_fast_ticks() {
                FAST_TICK
            } else {
                next_slow.saturating_duration_since(Instant::now())
            };
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(Input::Keys(bytes)) => {
                        for action in self.app.handle_input(&bytes) {
                            if action == Action::Quit {
                                return "quit";
                            }
                            self.act(action).await;
                        }
                    }
                    Some(Input::Resize(cols, rows)) => self.app.resize(cols, rows),
                    None => return "client closed the channel",
                },
                event = events.recv(), if events_open => {
                    match event {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            // A burst of changes is one refresh.
                            while events.try_recv().is_ok() {}
                            self.refresh_pending().await;
                        }
                        Err(broadcast::error::RecvError::Closed) => events_open = false,
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Carries out one action of the console.
    async fn act(&mut self, action: Action) {
        match action {
            Action::Approve { id, comment } => self.decide("approve", id, comment).await,
            Action::Deny { id, comment } => self.decide("deny", id, comment).await,
            Action::OpenRecording(path) => self.open_recording(path).await,
            Action::Refresh => {
                self.refresh_pending().await;
                self.refresh_sessions();
                self.refresh_recordings().await;
            }
            Action::Quit => {}
        }
    }

    /// `approve|deny ID [--comment TEXT]` through the console commands' own code path.
    async fn decide(&mut self, verb: &str, id: String, comment: Option<String>) {
        let mut words = vec![verb.to_string(), id];
        if let Some(comment) = comment {
            words.push("--comment".to_string());
            words.push(comment);
        }
        tracing::info!(command = %words.join(" "), "console screen decision");
        let approvals = self.gateway.approvals.clone();
        let who = self.reviewer.clone();
        let reply =
            tokio::task::spawn_blocking(move || run_console_words(&approvals, &who, &words)).await;
        let notice = match reply {
            Ok(reply) if reply.exit == 0 => reply.stdout,
            Ok(reply) => reply.stderr,
            Err(_) => "gatehouse: the decision failed".to_string(),
        };
        let notice = notice.trim().trim_start_matches("gatehouse: ").to_string();
        self.app.notice(notice);
        self.refresh_pending().await;
    }

    async fn open_recording(&mut self, path: PathBuf) {
        let index = self.recordings.clone();
        let opened = tokio::task::spawn_blocking(move || index.blocking_lock().open(&path)).await;
        match opened {
            Ok(Ok(cast)) => self.app.show_replay(ReplayApp::from_cast(cast)),
            Ok(Err(err)) => self.app.notice(format!("cannot replay: {err}")),
            Err(_) => self.app.notice("cannot replay: the read failed"),
        }
    }

    async fn refresh_pending(&mut self) {
        let approvals = self.gateway.approvals.clone();
        if let Ok(items) = tokio::task::spawn_blocking(move || pending_items(&approvals)).await {
            self.app.set_pending(items);
        }
    }

    fn refresh_sessions(&mut self) {
        // In memory, one short lock: no need to leave the async thread.
        self.app.set_sessions(session_items(&self.gateway.sessions));
    }

    async fn refresh_recordings(&mut self) {
        let index = self.recordings.clone();
        if let Ok(items) =
            tokio::task::spawn_blocking(move || index.blocking_lock().refresh()).await
        {
            self.app.set_recordings(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(terminal_size(100, 30), (100, 30));
        assert_eq!(terminal_size(0, 0), (1, 1));
        assert_eq!(terminal_size(u32::MAX, u32::MAX), (500, 300));
    }

    #[test]
    fn screens_are_bounded() {
        let slots: Vec<ScreenSlot> = (0..MAX_SCREENS).map_while(|_| ScreenSlot::take()).collect();
        assert_eq!(slots.len(), MAX_SCREENS);
        assert!(ScreenSlot::take().is_none());
        drop(slots);
        assert!(ScreenSlot::take().is_some());
    }
}
