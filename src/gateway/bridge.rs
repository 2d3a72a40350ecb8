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
//! Frames keep their order: EOF, exit status, exit signal and close reach the agent in the order
//! the target sent them, after all the data before them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Sig};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bytes queued per direction at most: four times the SSH window either side grants (2 MiB).
pub const PIPE_BYTES: usize = 8 * 1024 * 1024;
/// Frames queued per direction at most (small packets hit this before the byte bound).
const PIPE_FRAMES: usize = 1024;
/// After the agent closes its channel, how long the target gets to finish and close.
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
pub async fn run(
    agent: Channel<Msg>,
    upstream: Channel<russh::client::Msg>,
    handle: Handle,
) -> Option<u32> {
    let agent_id = agent.id();
    let (agent_rx, agent_tx) = agent.split();
    let (up_rx, up_tx) = upstream.split();

    let (to_target_tx, mut to_target_rx) = mpsc::channel::<Queued>(PIPE_FRAMES);
    let (to_agent_tx, mut to_agent_rx) = mpsc::channel::<Queued>(PIPE_FRAMES);

    let read_agent = tokio::spawn(pump(agent_rx, to_target_tx));
    let read_target = tokio::spawn(pump(up_rx, to_agent_tx));

    // Agent → target.
    let write_target = async move {
        while let Some((frame, _permit)) = to_target_rx.recv().await {
            let ok = match frame {
                Frame::Data(data) => up_tx.data_bytes(data).await.is_ok(),
                // Agents have no business sending extended data; drop it.
                Frame::ExtendedData(..) => true,
                Frame::Eof => up_tx.eof().await.is_ok(),
                Frame::WindowChange(c, r, pw, ph) => {
                    up_tx.window_change(c, r, pw, ph).await.is_ok()
                }
                Frame::Signal(sig) => up_tx.signal(sig).await.is_ok(),
                Frame::Close => break,
                Frame::ExitStatus(_) | Frame::ExitSignal { .. } | Frame::ExecRefused => true,
            };
            if !ok {
                break;
            }
        }
        let _ = up_tx.close().await;
    };

    // Target → agent.
    let write_agent = async move {
        let mut status = None;
        while let Some((frame, _permit)) = to_agent_rx.recv().await {
            let ok = match frame {
                Frame::Data(data) => agent_tx.data_bytes(data).await.is_ok(),
                Frame::ExtendedData(ext, data) => {
                    agent_tx.extended_data_bytes(ext, data).await.is_ok()
                }
                Frame::Eof => agent_tx.eof().await.is_ok(),
                Frame::ExitStatus(code) => {
                    status = Some(code);
                    agent_tx.exit_status(code).await.is_ok()
                }
                Frame::ExitSignal {
                    signal,
                    core_dumped,
                    message,
                    lang,
                } => {
                    status = Some(128 + signal_number(&signal));
                    handle
                        .exit_signal_request(agent_id, signal, core_dumped, message, lang)
                        .await
                        .is_ok()
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
                Frame::Close => break,
                Frame::WindowChange(..) | Frame::Signal(_) => true,
            };
            if !ok {
                break;
            }
        }
        let _ = agent_tx.close().await;
        status
    };

    tokio::pin!(write_target);
    tokio::pin!(write_agent);
    let status = tokio::select! {
        status = &mut write_agent => status,
        _ = &mut write_target => {
            // The agent closed first: give the target a moment to report and close.
            tokio::time::timeout(CLOSE_GRACE, &mut write_agent).await.ok().flatten()
        }
    };
    read_agent.abort();
    read_target.abort();
    status
}

/// Reads one side's channel messages into a bounded queue until that side closes.
async fn pump(mut rx: russh::ChannelReadHalf, queue: mpsc::Sender<Queued>) {
    let bytes = Arc::new(Semaphore::new(PIPE_BYTES));
    loop {
        let frame = match rx.wait().await {
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
        // A single frame larger than the whole bound still passes, alone.
        let want = u32::try_from(len.min(PIPE_BYTES)).unwrap_or(u32::MAX);
        let Ok(permit) = bytes.clone().acquire_many_owned(want).await else {
            return;
        };
        let closing = matches!(frame, Frame::Close);
        if queue.send((frame, permit)).await.is_err() || closing {
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
