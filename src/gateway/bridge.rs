//! Copies one exec's bytes and control messages between the agent's channel and the target's.
//!
//! Each direction is a reader and a writer joined by a queue bounded in bytes
//! ([`PIPE_BYTES`]) and in frames. Why not copy directly: russh grants window as soon as data
//! arrives, so a reader that stops reading blocks its whole SSH connection's packet loop — window
//! adjustments included. With `cat` both ways, a direct copy can stall both connections at once
//! (each loop waiting for the other direction's window). A queue larger than the peer's window
//! keeps each loop moving while the other side catches up; past the bound, the reader stops and
//! back-pressure reaches the sender, so memory stays bounded.
//!
//! Frames keep their order, with two exceptions that make the end of a command one message:
//! - An exit status or exit signal is held back until the target's EOF (or close), so the agent
//!   always gets every byte of output before it learns that the command ended. SSH does not
//!   order exit-status after the data, and OpenSSH's sshd sends it as soon as the command is
//!   reaped, possibly with output still in its buffers; clients that stop reading once they
//!   have the status (paramiko's `recv_exit_status` and a `recv_ready` loop) would lose the tail.
//! - The target's EOF is held back until its exit status, exit signal or close, so the agent
//!   hears of the end before it can close the channel. sshd sends EOF once the command's output
//!   is closed and the status once it is reaped, which may be much later; an OpenSSH client
//!   sharing its connection (ControlMaster) closes a channel as soon as it has sent and received
//!   EOF. sshd answers such a close after the status, but russh answers it at once and drops
//!   anything sent after, so the agent would lose the status (its `ssh` exits 255). No client
//!   is worse off: a client that waits for the end of a command waits for its status or close.
//!
//! Upstream head-of-line blocking: russh grants window on a pooled target connection as soon as
//! data arrives and hands it to the channel's bounded queue, so a channel whose agent stops
//! reading ends up blocking the connection's whole packet loop (russh 0.65 has no per-channel
//! window control). Its reader marks the connection congested while it waits (see
//! [`crate::upstream::ConnectionLoad`]) and the pool puts new channels elsewhere; both directions
//! count the bytes they carry there, so that the pool can rotate a connection that has carried
//! enough.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Sig};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::recording::ExecRecording;
use crate::record::mask::{MaskMode, MaskRules, Masker, QUIET_FLUSH};
use crate::upstream::ConnectionLoad;

/// Bytes queued from the agent at most: eight times the SSH window either side grants (2 MiB).
pub const PIPE_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of output queued toward the agent at most: twice the window, enough to keep the target
/// connection's packet loop moving while the agent catches up, and all a stalled reader pins.
pub const OUTPUT_PIPE_BYTES: usize = 4 * 1024 * 1024;
/// Bytes queued from the agent above which its SSH window is narrowed (see [`AgentInflow`]).
pub const CONGESTED_AT: usize = 4 * 1024 * 1024;
/// The window an agent connection gets while congested, and normally.
pub const NARROW_WINDOW: u32 = 64 * 1024;
/// The normal window (matches the server configuration).
pub const WIDE_WINDOW: u32 = 2 * 1024 * 1024;

/// The agent→target queue of one channel, watched by the connection handler.
///
/// russh re-opens an agent's window as soon as data arrives, so a queue that is merely bounded
/// would, once full, stop the agent connection's whole packet loop — including the window
/// adjustments the other direction is waiting for, and with `cat` both ways the two connections
/// then wait on each other forever. Instead, past [`CONGESTED_AT`] queued bytes the handler's
/// `adjust_window` narrows the window it grants, so the agent itself slows down and the queue
/// never reaches its bound; the packet loop keeps running.
#[derive(Clone)]
pub struct AgentInflow(pub Arc<Semaphore>);

impl AgentInflow {
    /// A fresh, empty queue budget.
    pub fn new() -> AgentInflow {
        AgentInflow(Arc::new(Semaphore::new(PIPE_BYTES)))
    }

    /// Whether the agent should be slowed down.
    pub fn congested(&self) -> bool {
        PIPE_BYTES.saturating_sub(self.0.available_permits()) > CONGESTED_AT
    }
}

impl Default for AgentInflow {
    fn default() -> Self {
        AgentInflow::new()
    }
}
/// Told to the agent when its exec's recording fails and recording is mandatory.
const RECORDING_FAILED: &[u8] = b"gatehouse: the session recording failed; ending the command\n";
/// Frames queued per direction at most (small packets hit this before the byte bound).
const PIPE_FRAMES: usize = 1024;
/// After the target stops taking input, how long it gets to report how the command ended and
/// close (and, after the agent left, how long the output already queued may take).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One unit copied across the bridge.
enum Frame {
    Data(Bytes),
    ExtendedData(u32, Bytes),
    Eof,
    ExitStatus(u32),
    ExitSignal {
        signal: Sig,
        core_dumped: bool,
        message: String,
        lang: String,
    },
    WindowChange(u32, u32, u32, u32),
    Signal(Sig),
    /// The target refused the exec request.
    ExecRefused,
    Close,
}

/// A frame and the byte permits it holds while queued.
type Queued = (Frame, OwnedSemaphorePermit);

/// Bridges until both sides are closed; returns the target's exit status (128+N for a signal).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub async fn run(
    agent: Channel<Msg>,
    early: Vec<ChannelMsg>,
    upstream: Channel<russh::client::Msg>,
    handle: Handle,
    recording: ExecRecording,
    record_input: bool,
    masking: Option<(Arc<MaskRules>, MaskMode)>,
    inflow: AgentInflow,
    load: Arc<ConnectionLoad>,
) -> BridgeEnd {
    let agent_id = agent.id();
    // For closing the agent's channel when the agent-bound side cannot finish in time.
    let closer = handle.clone();
    let (agent_rx, agent_tx) = agent.split();
    let (up_rx, up_tx) = upstream.split();

    let (to_target_tx, mut to_target_rx) = mpsc::channel::<Queued>(PIPE_FRAMES);
    let (to_agent_tx, mut to_agent_rx) = mpsc::channel::<Queued>(PIPE_FRAMES);

    let read_agent = tokio::spawn(pump(agent_rx, early, to_target_tx, inflow.0.clone(), None));
    let read_target = tokio::spawn(pump(
        up_rx,
        Vec::new(),
        to_agent_tx,
        Arc::new(Semaphore::new(OUTPUT_PIPE_BYTES)),
        Some(load.clone()),
    ));
    let input_recording = recording.clone();

    // Agent → target.
    let write_target = async move {
        let mut end = InputEnd::AgentLeft;
        while let Some((frame, _permit)) = to_target_rx.recv().await {
            let ok = match frame {
                Frame::Data(data) => {
                    if record_input && !input_recording.input(data.clone()).await {
                        end = InputEnd::Unrecorded;
                        break;
                    }
                    load.carry(data.len());
                    up_tx.data_bytes(data).await.is_ok()
                }
                // Agents have no business sending extended data; drop it.
                Frame::ExtendedData(..) => true,
                Frame::Eof => up_tx.eof().await.is_ok(),
                Frame::WindowChange(c, r, pw, ph) => {
                    input_recording.resize(c, r).await;
                    up_tx.window_change(c, r, pw, ph).await.is_ok()
                }
                Frame::Signal(sig) => up_tx.signal(sig).await.is_ok(),
                Frame::Close => break,
                Frame::ExitStatus(_) | Frame::ExitSignal { .. } | Frame::ExecRefused => true,
            };
            if !ok {
                end = InputEnd::TargetGone;
                break;
            }
        }
        let _ = up_tx.close().await;
        end
    };

    // Target → agent: every byte passes the masker, then the recorder, then the agent.
    let write_agent = async move {
        let mut status = None;
        // The end of the command: the target's EOF and its exit status or signal, each held
        // until the other has come (or the close), then sent together (see the module's doc).
        let mut end = CommandEnd::default();
        let mut out = Output {
            agent: &agent_tx,
            recording: &recording,
            stdout: masking.as_ref().map(|m| Masker::new(m.0.clone(), m.1)),
            stderr: masking.as_ref().map(|m| Masker::new(m.0.clone(), m.1)),
            recording_failed: false,
        };
        loop {
            // Held-back bytes (a possible secret's start) go out after a moment of quiet.
            let next = if out.has_pending() {
                match tokio::time::timeout(QUIET_FLUSH, to_agent_rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        if !out.flush().await {
                            break;
                        }
                        continue;
                    }
                }
            } else {
                to_agent_rx.recv().await
            };
            let Some((frame, _permit)) = next else {
                // The target's side ended without its close: the agent left, or its input
                // could not be recorded (then the exec ends here, and the agent is told).
                out.recording_failed |= recording.failed();
                break;
            };
            if !matches!(frame, Frame::Data(_) | Frame::ExtendedData(..)) && !out.flush().await {
                break;
            }
            let ok = match frame {
                Frame::Data(data) => out.emit(None, &data).await,
                Frame::ExtendedData(ext, data) => out.emit(Some(ext), &data).await,
                Frame::Eof => {
                    end.eof = true;
                    end.send_when_complete(&agent_tx, &handle, agent_id).await
                }
                Frame::ExitStatus(code) => {
                    status = Some(code);
                    end.exit = Some(Frame::ExitStatus(code));
                    end.send_when_complete(&agent_tx, &handle, agent_id).await
                }
                frame @ Frame::ExitSignal { .. } => {
                    if let Frame::ExitSignal { signal, .. } = &frame {
                        status = Some(128 + signal_number(signal));
                    }
                    end.exit = Some(frame);
                    end.send_when_complete(&agent_tx, &handle, agent_id).await
                }
                Frame::ExecRefused => {
                    let _ = agent_tx
                        .extended_data_bytes(
                            1,
                            Bytes::from_static(b"gatehouse: the target refused the exec request\n"),
                        )
                        .await;
                    status = Some(super::channel::EXIT_UPSTREAM_FAILED);
                    let _ = agent_tx
                        .exit_status(super::channel::EXIT_UPSTREAM_FAILED)
                        .await;
                    break;
                }
                Frame::Close => {
                    end.send(&agent_tx, &handle, agent_id).await;
                    break;
                }
                Frame::WindowChange(..) | Frame::Signal(_) => true,
            };
            if !ok {
                break;
            }
        }
        if out.recording_failed {
            let _ = agent_tx
                .extended_data_bytes(1, Bytes::from_static(RECORDING_FAILED))
                .await;
            status = Some(super::channel::EXIT_REFUSED);
            let _ = agent_tx.exit_status(super::channel::EXIT_REFUSED).await;
        }
        let _ = agent_tx.close().await;
        (status, out.counts())
    };

    tokio::pin!(write_target);
    tokio::pin!(write_agent);
    let (status, masked) = tokio::select! {
        done = &mut write_agent => done,
        input_end = &mut write_target => {
            if input_end != InputEnd::TargetGone {
                // The upstream channel is closed and nothing more comes from the target:
                // russh drops what arrives on a channel it has closed. What is queued is
                // still recorded and sent.
                read_target.abort();
            }
            // Give the agent-bound side a moment to finish: the target to report how the
            // command ended and close, what is queued to reach the agent.
            match tokio::time::timeout(CLOSE_GRACE, &mut write_agent).await {
                Ok(done) => done,
                Err(_) => {
                    // The agent is not reading, or the target never closed: close the agent's
                    // channel, so that it is not left open with nothing behind it.
                    let _ = closer.close(agent_id).await;
                    (None, BTreeMap::new())
                }
            }
        }
    };
    read_agent.abort();
    read_target.abort();
    BridgeEnd { status, masked }
}

/// Why the agent → target side of a bridge ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InputEnd {
    /// The agent closed its channel, or its connection is gone.
    AgentLeft,
    /// The agent's input could not be recorded: fail closed, the exec ends.
    Unrecorded,
    /// The target's channel no longer takes input.
    TargetGone,
}

/// How the target said its command ended, held until both parts have come.
#[derive(Default)]
struct CommandEnd {
    /// The target's EOF has come.
    eof: bool,
    /// Its exit status or exit signal, until sent.
    exit: Option<Frame>,
    /// The EOF has been sent to the agent.
    eof_sent: bool,
}

impl CommandEnd {
    /// Sends the EOF and the exit once both have come; false when the agent's channel is gone.
    async fn send_when_complete(
        &mut self,
        agent: &ChannelWriteHalf<Msg>,
        handle: &Handle,
        agent_id: russh::ChannelId,
    ) -> bool {
        if !self.eof || self.exit.is_none() {
            return true;
        }
        self.send(agent, handle, agent_id).await
    }

    /// Sends whatever of the end has come and not been sent (at the target's close, whatever
    /// has come); false when the agent's channel is gone.
    async fn send(
        &mut self,
        agent: &ChannelWriteHalf<Msg>,
        handle: &Handle,
        agent_id: russh::ChannelId,
    ) -> bool {
        let eof = self.eof && !self.eof_sent;
        if !eof && self.exit.is_none() {
            return true;
        }
        // russh's connection loop writes out the first message that wakes it on its own, then
        // drains the rest; an empty data message (nothing on the wire) wakes it instead, so EOF,
        // exit status and close reach the agent in one packet (a client such as paramiko wakes
        // once per packet).
        let _ = handle.data(agent_id, Bytes::new()).await;
        if eof {
            self.eof_sent = true;
            if agent.eof().await.is_err() {
                return false;
            }
        }
        match self.exit.take() {
            Some(Frame::ExitStatus(code)) => agent.exit_status(code).await.is_ok(),
            Some(Frame::ExitSignal {
                signal,
                core_dumped,
                message,
                lang,
            }) => handle
                .exit_signal_request(agent_id, signal, core_dumped, message, lang)
                .await
                .is_ok(),
            _ => true,
        }
    }
}

/// How a bridged exec ended.
pub struct BridgeEnd {
    /// The target's exit status (128+N for a signal); `None` if it closed without one.
    pub status: Option<u32>,
    /// Secrets masked in the output, per kind.
    pub masked: BTreeMap<String, u64>,
}

/// The agent-bound side of the bridge: masking, recording and sending, per stream.
struct Output<'a> {
    agent: &'a ChannelWriteHalf<Msg>,
    recording: &'a ExecRecording,
    /// Masker for stdout (`None`: masking off for this target).
    stdout: Option<Masker>,
    /// Masker for stderr (a separate stream: a secret never spans the two).
    stderr: Option<Masker>,
    /// Set when the recording failed (fail closed ends the exec).
    recording_failed: bool,
}

impl Output<'_> {
    fn has_pending(&self) -> bool {
        self.stdout.as_ref().is_some_and(Masker::has_pending)
            || self.stderr.as_ref().is_some_and(Masker::has_pending)
    }

    /// Masks, records and sends one chunk; false when the exec must end.
    async fn emit(&mut self, ext: Option<u32>, data: &Bytes) -> bool {
        let masker = match ext {
            None => self.stdout.as_mut(),
            Some(_) => self.stderr.as_mut(),
        };
        let bytes = match masker {
            Some(m) => {
                // A fresh buffer per chunk becomes the `Bytes` without a copy.
                let mut masked = Vec::with_capacity(data.len() + 64);
                m.push(data, &mut masked);
                Bytes::from(masked)
            }
            None => data.clone(),
        };
        self.send(ext, bytes).await
    }

    /// Releases everything the maskers hold back.
    async fn flush(&mut self) -> bool {
        for ext in [None, Some(1)] {
            let masker = match ext {
                None => self.stdout.as_mut(),
                Some(_) => self.stderr.as_mut(),
            };
            if let Some(m) = masker {
                if m.has_pending() {
                    let mut held = Vec::new();
                    m.flush(&mut held);
                    let bytes = Bytes::from(held);
                    if !self.send(ext, bytes).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn send(&mut self, ext: Option<u32>, bytes: Bytes) -> bool {
        if bytes.is_empty() {
            return true;
        }
        if !self.recording.output(bytes.clone()).await {
            self.recording_failed = true;
            return false;
        }
        match ext {
            None => self.agent.data_bytes(bytes).await.is_ok(),
            Some(ext) => self.agent.extended_data_bytes(ext, bytes).await.is_ok(),
        }
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for m in [self.stdout.as_ref(), self.stderr.as_ref()]
            .into_iter()
            .flatten()
        {
            for (kind, n) in m.counts() {
                *all.entry(kind.clone()).or_insert(0) += n;
            }
        }
        all
    }
}

/// Reads one side's channel messages into a bounded queue until that side closes; `early`
/// holds messages read before the bridge started (stdin sent while a command was held).
async fn pump(
    mut rx: russh::ChannelReadHalf,
    early: Vec<ChannelMsg>,
    queue: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    load: Option<Arc<ConnectionLoad>>,
) {
    let mut early = early.into_iter();
    loop {
        let next = match early.next() {
            Some(msg) => Some(msg),
            None => rx.wait().await,
        };
        let frame = match next {
            Some(ChannelMsg::Data { data }) => Frame::Data(data),
            Some(ChannelMsg::ExtendedData { data, ext }) => Frame::ExtendedData(ext, data),
            Some(ChannelMsg::Eof) => Frame::Eof,
            Some(ChannelMsg::ExitStatus { exit_status }) => Frame::ExitStatus(exit_status),
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => Frame::ExitSignal {
                signal: signal_name,
                core_dumped,
                message: error_message,
                lang: lang_tag,
            },
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            }) => Frame::WindowChange(col_width, row_height, pix_width, pix_height),
            Some(ChannelMsg::Signal { signal }) => Frame::Signal(signal),
            Some(ChannelMsg::Failure) => Frame::ExecRefused,
            Some(ChannelMsg::Close) | None => Frame::Close,
            Some(_) => continue,
        };
        let len = match &frame {
            Frame::Data(d) | Frame::ExtendedData(_, d) => d.len(),
            _ => 0,
        };
        if let Some(load) = &load {
            load.carry(len);
        }
        // A single frame larger than the (smaller) bound still passes, alone.
        let want = u32::try_from(len.min(OUTPUT_PIPE_BYTES)).unwrap_or(u32::MAX);
        let permit = match bytes.clone().try_acquire_many_owned(want) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => {
                let _waiting = load.as_ref().map(ConnectionLoad::congestion);
                let Ok(permit) = bytes.clone().acquire_many_owned(want).await else {
                    return;
                };
                permit
            }
        };
        let closing = matches!(frame, Frame::Close);
        let sent = match queue.try_reserve() {
            Ok(slot) => {
                slot.send((frame, permit));
                true
            }
            Err(mpsc::error::TrySendError::Closed(())) => false,
            Err(mpsc::error::TrySendError::Full(())) => {
                let _waiting = load.as_ref().map(ConnectionLoad::congestion);
                queue.send((frame, permit)).await.is_ok()
            }
        };
        if !sent || closing {
            return;
        }
    }
}

/// Conventional number of a signal, for the 128+N status logged when a command was killed.
fn signal_number(sig: &Sig) -> u32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        _ => 0,
    }
}
