//! The loop that accepts agent connections and starts an SSH session on each.
//!
//! Why not russh's own loop (`Server::run_on_socket`): it returns on the first failed
//! `accept`, which stops the whole server. `accept` fails with EMFILE whenever the process is
//! out of file descriptors, and any client can bring that about by opening connections. Here a
//! failed accept is logged and retried after [`ACCEPT_PAUSE`], so a flood of connections slows
//! newcomers down and the bastion keeps serving the agents it has; connections waiting in the
//! kernel's queue are taken as soon as descriptors are free again.
//!
//! Not here: what a connection may do (see `server`), and the order of shutdown (see
//! [`super::Gateway::serve`]).

use std::future::Future;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use russh::Disconnect;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::server::Acceptor;

/// How long accepting pauses after a failure that retrying at once would repeat (no file
/// descriptors or memory left).
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a connection told to leave gets to send its disconnect message.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Accepts agents on `listener` until `stop` resolves. Each connection runs in its own task
/// until it ends, or until a reason is sent on `leave`: then it is disconnected with it.
pub async fn accept_until(
    listener: &TcpListener,
    config: Arc<russh::server::Config>,
    acceptor: &Acceptor,
    leave: &broadcast::Sender<String>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    // Failed accepts since the last success, so a flood is logged once, not per attempt.
    let mut failures = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting agent connections again");
                    failures = 0;
                }
                if let Err(err) = socket.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set TCP_NODELAY on an agent connection");
                }
                let handler = acceptor.connection(peer);
                let config = config.clone();
                let mut leave = leave.subscribe();
                tokio::spawn(async move {
                    let stream = crate::tcp::QuickAck::new(socket);
                    let session = match russh::server::run_stream(config, stream, handler).await {
                        Ok(session) => session,
                        Err(err) => {
                            tracing::debug!(error = %err, "agent connection ended before its session started");
                            return;
                        }
                    };
                    let handle = session.handle();
                    tokio::pin!(session);
                    tokio::select! {
                        reason = leave.recv() => {
                            let reason = reason.unwrap_or_default();
                            let _ = handle
                                .disconnect(Disconnect::ByApplication, reason, String::new())
                                .await;
                            let _ = tokio::time::timeout(DISCONNECT_GRACE, session).await;
                        }
                        ended = &mut session => {
                            if let Err(err) = ended {
                                tracing::debug!(error = %err, "agent connection ended with an error");
                            }
                        }
                    }
                });
            }
            // The peer gave up between the handshake and our accept: nothing to wait for.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                ) => {}
            Err(err) => {
                if failures == 0 {
                    tracing::error!(
                        error = %err,
                        pause = ?ACCEPT_PAUSE,
                        "cannot accept agent connections; retrying"
                    );
                }
                failures += 1;
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}
