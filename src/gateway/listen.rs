//! The loop that accepts agent connections and starts an SSH session on each.
//!
//! Why not russh's own loop (`Server::run_on_socket`): it returns on the first failed
//! `accept`, which stops the whole server. `accept` fails with EMFILE whenever the process is
//! out of file descriptors, and any client can bring that about by opening connections. Here a
//! failed accept is logged and retried after [`ACCEPT_PAUSE`], so a flood of connections slows
//! newcomers down and the bastion keeps serving the agents it has; connections waiting in the
//! kernel's queue are taken as soon as descriptors are free again.
//!
//! Each connection gets the login grace OpenSSH users know (`LoginGraceTime`): from accept
//! to a successful authentication. A connection that is still not authenticated then is
//! closed, so connections that never log in cannot hold the bastion's connection slots.
//!
//! Not here: what a connection may do (see `server`), what it is offered (see `handshake`),
//! and the order of shutdown (see [`super::Gateway::serve`]).

use std::future::Future;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use russh::Disconnect;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::handshake::Handshake;
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
    handshake: Arc<Handshake>,
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
                let (handler, login) = acceptor.connection(peer);
                let span = handler.span();
                let handshake = handshake.clone();
                let leave = leave.subscribe();
                tokio::spawn(
                    serve_connection(socket, handshake, handler, login, leave).instrument(span),
                );
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

/// Runs one agent connection (inside its span, which names the peer): the identification
/// exchange, then russh's session until it ends, the login grace runs out before
/// authentication, or a reason to leave arrives on `leave`.
async fn serve_connection(
    mut socket: tokio::net::TcpStream,
    handshake: Arc<Handshake>,
    handler: super::server::ConnectionHandler,
    login: oneshot::Receiver<()>,
    mut leave: broadcast::Receiver<String>,
) {
    let deadline = Instant::now() + handshake.login_grace;
    let read = match tokio::time::timeout_at(deadline, handshake.exchange(&mut socket)).await {
        Ok(Ok(read)) => read,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "agent connection ended before identifying itself");
            return;
        }
        Err(_) => {
            tracing::info!(grace = ?handshake.login_grace, "agent sent no SSH identification within the login grace; closed");
            return;
        }
    };
    let config = handshake.config_for(&read);
    let stream = handshake.greeted(crate::tcp::QuickAck::new(socket), read);
    let cut = stream.cut();
    let session = match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => session,
        Err(err) => {
            tracing::debug!(error = %err, "agent connection ended before its session started");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let login_grace_over = async {
        match tokio::time::timeout_at(deadline, login).await {
            Err(_) => {}
            // Authenticated in time, or the handler is gone because the session ended: the
            // session's own end is what to wait for.
            Ok(_) => std::future::pending().await,
        }
    };
    let reason = tokio::select! {
        reason = leave.recv() => reason.unwrap_or_default(),
        () = login_grace_over => {
            tracing::info!(grace = ?handshake.login_grace, "agent did not authenticate within the login grace; closed");
            // Before authentication there is nothing to say goodbye to, and in the middle of a
            // key exchange russh would not send it anyway.
            cut.now();
            let _ = session.await;
            return;
        }
        ended = &mut session => {
            if let Err(err) = ended {
                tracing::debug!(error = %err, "agent connection ended with an error");
            }
            return;
        }
    };
    let _ = handle
        .disconnect(Disconnect::ByApplication, reason, String::new())
        .await;
    if tokio::time::timeout(DISCONNECT_GRACE, &mut session)
        .await
        .is_err()
    {
        // Still there (a key exchange under way ignores the handle): close it all the same.
        cut.now();
        let _ = session.await;
    }
}
