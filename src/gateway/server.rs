//! The russh server handler: authentication and request replies, kept thin.
//!
//! Every callback answers at once; anything that waits (policy holds, upstream connects, data)
//! happens in the per-channel task started by `channel_open_session`. Refusals are logged with
//! the reason, never with key material.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::channel::{self, ChannelContext, Inflows};
use super::{env_allowed, Gateway, CONSOLE_LOGIN};
use crate::identity::ca::CertIdentity;

/// Distinguishes one agent connection in logs and recordings; never confused with a channel id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl SessionId {
    /// A fresh random id.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }
}

/// Hands each accepted TCP connection a fresh [`ConnectionHandler`].
pub struct Acceptor {
    /// Shared gateway state.
    gateway: Arc<Gateway>,
    /// Connections currently open (bounded by [`super::MAX_CONNECTIONS`]).
    open: Arc<AtomicUsize>,
}

impl Acceptor {
    /// An acceptor for this gateway.
    pub fn new(gateway: Arc<Gateway>) -> Acceptor {
        Acceptor {
            gateway,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Acceptor {
    /// Agent connections open right now (shutdown waits for them to leave).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Acceptor {
    /// The handler for a connection just accepted from `peer`, and what resolves when the
    /// connection has authenticated (the login grace ends there).
    pub fn connection(&self, peer: SocketAddr) -> (ConnectionHandler, oneshot::Receiver<()>) {
        let session_id = SessionId::random();
        let over_limit = self.open.fetch_add(1, Ordering::SeqCst) >= super::MAX_CONNECTIONS;
        let span = tracing::info_span!(
            "connection",
            session_id = %session_id,
            peer = %peer,
            identity = tracing::field::Empty,
            target = tracing::field::Empty,
        );
        let (logged_in, login) = oneshot::channel();
        let handler = ConnectionHandler {
            gateway: self.gateway.clone(),
            peer,
            session_id,
            authenticated: None,
            channels: Arc::new(AtomicUsize::new(0)),
            channels_opened: 0,
            inflows: Inflows::default(),
            open: self.open.clone(),
            over_limit,
            logged_in: Some(logged_in),
            span,
        };
        (handler, login)
    }
}

/// Who an authenticated connection belongs to and where it goes.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified certificate identity.
    pub identity: CertIdentity,
    /// The target named by the login name.
    pub target: String,
}

/// One agent connection.
pub struct ConnectionHandler {
    /// Shared gateway state.
    gateway: Arc<Gateway>,
    /// The agent's address (for `source-address`, rate limiting and logs).
    peer: SocketAddr,
    /// This connection's id.
    session_id: SessionId,
    /// Set once a certificate has been accepted.
    authenticated: Option<Authenticated>,
    /// Places taken in the limit on open session channels (see [`channel::ChannelSlot`]).
    channels: Arc<AtomicUsize>,
    /// Session channels opened so far (numbers recordings).
    channels_opened: u32,
    /// Agent→target queues of this connection's channels (window narrowing).
    inflows: Inflows,
    /// Connections open gateway-wide; decremented on drop.
    open: Arc<AtomicUsize>,
    /// Set when the gateway was already at [`super::MAX_CONNECTIONS`]: everything is refused.
    over_limit: bool,
    /// Told when a certificate has been accepted, so the accept loop stops the login grace.
    logged_in: Option<oneshot::Sender<()>>,
    /// Carries identity, target and session id into every log line of this connection.
    span: tracing::Span,
}

impl Drop for ConnectionHandler {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectionHandler {
    /// This connection's span (session id, peer, then identity and target): the accept loop's
    /// lines about the connection carry it too.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    async fn accept(&mut self, user: &str, identity: CertIdentity) -> Auth {
        self.span.record("identity", identity.identity.as_str());
        self.span.record("target", user);
        self.span.in_scope(|| {
            tracing::info!(serial = identity.serial, principals = ?identity.principals, "agent authenticated")
        });
        let recorded = self
            .gateway
            .audit_event(
                "auth.success",
                serde_json::json!({
                    "session_id": self.session_id.to_string(),
                    "peer": self.peer.to_string(),
                    "login": user,
                    "identity": identity.identity,
                    "serial": identity.serial,
                    "principals": identity.principals,
                }),
            )
            .await;
        if !recorded {
            // Fail closed: no session without its audit record.
            return Auth::reject();
        }
        self.authenticated = Some(Authenticated {
            identity,
            target: user.to_string(),
        });
        if let Some(logged_in) = self.logged_in.take() {
            // The accept loop may have given up on this connection already; nothing to tell.
            let _ = logged_in.send(());
        }
        Auth::Accept
    }

    async fn fail(&self, user: &str, reason: &str) -> Auth {
        let count = self.gateway.auth_failures.record(self.peer.ip());
        self.span.in_scope(|| {
            tracing::warn!(login = %user, %reason, failures_this_minute = count, "authentication refused")
        });
        self.gateway
            .audit_event(
                "auth.failure",
                serde_json::json!({
                    "session_id": self.session_id.to_string(),
                    "peer": self.peer.to_string(),
                    "login": user,
                    "reason": reason,
                }),
            )
            .await;
        Auth::reject()
    }

    /// Why this connection may not authenticate at all, if it may not.
    fn blocked(&self) -> Option<&'static str> {
        if self.over_limit {
            Some("gatehouse is at its connection limit")
        } else if self.gateway.auth_failures.is_blocked(self.peer.ip()) {
            Some("too many failures from this address")
        } else {
            None
        }
    }

    fn refuse_request(&self, what: &str) {
        self.span
            .in_scope(|| tracing::warn!(request = what, "request refused"));
        let gateway = self.gateway.clone();
        let fields = serde_json::json!({
            "session_id": self.session_id.to_string(),
            "identity": self.authenticated.as_ref().map(|a| a.identity.identity.clone()),
            "request": what,
        });
        // Not awaited: the refusal itself needs no acknowledgement, and callbacks must not wait.
        tokio::spawn(async move {
            gateway.audit_event("request.refused", fields).await;
        });
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = russh::Error;

    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        // Called whenever russh re-opens an agent's window: grant little while any of this
        // connection's queues toward the target is backed up (see `bridge::AgentInflow`).
        if self.inflows.congested() {
            super::bridge::NARROW_WINDOW
        } else {
            super::bridge::WIDE_WINDOW
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // An offer only lets the client go on to prove possession with a signature; it never
        // authenticates by itself (see GHSA-3cjp-w4cp-m9c8). The decision happens in
        // `auth_openssh_certificate` once russh has verified the signature.
        if let Some(why) = self.blocked() {
            self.span
                .in_scope(|| tracing::warn!(login = %user, "authentication refused: {why}"));
            return Ok(Auth::reject());
        }
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self
            .fail(
                user,
                "plain public key: only certificates from the gatehouse CA are accepted",
            )
            .await)
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        if let Some(why) = self.blocked() {
            return Ok(self.fail(user, why).await);
        }
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        // Fail closed: without a readable revocation list nobody gets in.
        let revocations = match self.gateway.revocations.current() {
            Ok(r) => r,
            Err(err) => {
                return Ok(self
                    .fail(user, &format!("revocation list unavailable: {err}"))
                    .await)
            }
        };
        let identity =
            match self
                .gateway
                .verifier
                .verify(certificate, now, Some(self.peer.ip()), &revocations)
            {
                Ok(identity) => identity,
                Err(rejection) => return Ok(self.fail(user, &rejection.to_string()).await),
            };
        if user == CONSOLE_LOGIN {
            if !self.gateway.approvals.is_reviewer(&identity) {
                return Ok(self
                    .fail(
                        user,
                        &format!("identity {}: not in a reviewer group", identity.identity),
                    )
                    .await);
            }
            return Ok(self.accept(user, identity).await);
        }
        // An unknown target and a missing grant are refused alike, so that login names cannot
        // be used to enumerate targets; only the log tells them apart.
        if self.gateway.config.target(user).is_none() {
            return Ok(self
                .fail(
                    user,
                    &format!("identity {}: unknown target", identity.identity),
                )
                .await);
        }
        if !self.gateway.config.granted(&identity.principals, user) {
            return Ok(self
                .fail(
                    user,
                    &format!("identity {}: no grant for this target", identity.identity),
                )
                .await);
        }
        if !self.gateway.access.contains_key(user) {
            return Ok(self.fail(user, "target has no vaulted key").await);
        }
        Ok(self.accept(user, identity).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(auth) = self.authenticated.clone() else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if auth.target == CONSOLE_LOGIN {
            let gateway = self.gateway.clone();
            let reviewer = auth.identity.clone();
            tokio::spawn(
                super::console::run(gateway, reviewer, channel).instrument(self.span.clone()),
            );
            reply.accept().await;
            return Ok(());
        }
        let Some(access) = self.gateway.access.get(&auth.target).cloned() else {
            reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        // Taken here, in the callback: once shutdown has begun no exec channel opens, and one
        // that opened before is waited for until its recording is sealed.
        let shutdown = self.gateway.shutdown.listen();
        if shutdown.is_shutdown() {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let Some(slot) = channel::ChannelSlot::take(&self.channels) else {
            self.refuse_request("session channel beyond the per-connection limit");
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        };
        self.channels_opened = self.channels_opened.saturating_add(1);
        let ctx = ChannelContext {
            gateway: self.gateway.clone(),
            identity: auth.identity,
            access,
            session_id: self.session_id,
            peer: self.peer,
            handle: session.handle(),
            channel_no: self.channels_opened,
            inflows: self.inflows.clone(),
            slot,
        };
        tokio::spawn(channel::run(ctx, channel, shutdown).instrument(self.span.clone()));
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.span.in_scope(|| {
            tracing::warn!(
                host = host_to_connect,
                port = port_to_connect,
                "port forwarding (direct-tcpip) refused"
            )
        });
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("unix socket forwarding (direct-streamlocal)");
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.span.in_scope(|| {
            tracing::warn!(
                address,
                port = *port,
                "remote port forwarding (tcpip-forward) refused"
            )
        });
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_request("remote unix socket forwarding");
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_request("agent forwarding");
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("X11 forwarding");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The value is never logged: agents put tokens in environment variables.
        if env_allowed(variable_name) {
            session.channel_success(channel)?;
        } else {
            self.span.in_scope(|| {
                tracing::warn!(variable = variable_name, "environment variable refused")
            });
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The pty is requested upstream by the channel task, for the exec it allows.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Accepted as a request; the channel task decides on the command line and reports a
        // refusal on stderr with exit status 126, as the contract says.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.authenticated.as_ref().map(|a| a.target.as_str()) == Some(CONSOLE_LOGIN) {
            // The console task opens the screen (see `console_screen`).
            session.channel_success(channel)?;
            return Ok(());
        }
        self.refuse_request("interactive shell");
        // Accept the request and refuse in-band: OpenSSH clients drop what a failed request
        // carried, so the agent would never see why.
        refuse_in_band(
            session,
            channel,
            b"gatehouse: interactive shells are not available on this bastion yet; run one command per exec (ssh HOST 'CMD')\r\n".to_vec(),
        )
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.span
            .in_scope(|| tracing::warn!(subsystem = name, "subsystem refused"));
        refuse_in_band(
            session,
            channel,
            format!("gatehouse: subsystem {name:?} is not available on this bastion; scp works as exec (scp -O)\r\n").into_bytes(),
        )
    }
}

/// Accepts a request and then refuses it on the channel: one stderr line, exit status 126, close.
fn refuse_in_band(
    session: &mut Session,
    channel: ChannelId,
    line: Vec<u8>,
) -> Result<(), russh::Error> {
    session.channel_success(channel)?;
    session.extended_data(channel, 1, line)?;
    session.exit_status_request(channel, super::channel::EXIT_REFUSED)?;
    session.eof(channel)?;
    session.close(channel)?;
    Ok(())
}
