//! One task per agent session channel: collect the requests that precede `exec`, decide the
//! command line, then either refuse it or bridge the channel to an upstream channel.
//!
//! The bridge runs one loop per direction so that a stalled direction never stops the other;
//! every queue on the way is bounded (russh's channel buffers, the SSH windows), so a slow reader
//! slows its writer instead of growing memory. EOF, exit status, exit signal and close are
//! forwarded in the order the target sent them.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Pty};

use super::server::SessionId;
use super::{env_allowed, Gateway};
use crate::identity::ca::CertIdentity;
use crate::policy::{self, Action, Decision};
use crate::upstream::TargetAccess;

/// Exit status for a command gatehouse refused (policy, reviewer or expiry).
pub const EXIT_REFUSED: u32 = 126;
/// Exit status when the target could not be reached (as OpenSSH's own client uses).
pub const EXIT_UPSTREAM_FAILED: u32 = 255;
/// Longest command line accepted in an exec request; longer ones are refused (the policy engine
/// holds anything over 64 KiB anyway).
pub const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// Environment variables kept per channel at most.
const MAX_ENV_VARS: usize = 32;

/// What a channel task needs to know about its connection.
pub struct ChannelContext {
    /// Shared gateway state.
    pub gateway: Arc<Gateway>,
    /// Who is on the other end.
    pub identity: CertIdentity,
    /// The target and how to reach it.
    pub access: TargetAccess,
    /// The connection's id (logs, recordings).
    pub session_id: SessionId,
    /// The agent's address.
    pub peer: Option<SocketAddr>,
    /// For replies that have no method on the channel itself (exit-signal).
    pub handle: Handle,
}

/// A pty the agent asked for; requested upstream for the command it goes with.
struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
    pix_width: u32,
    pix_height: u32,
    modes: Vec<(Pty, u32)>,
}

/// Runs one agent channel to its end.
pub async fn run(ctx: ChannelContext, mut channel: Channel<Msg>) {
    let mut pty = None;
    let mut env: Vec<(String, String)> = Vec::new();
    loop {
        let Some(msg) = channel.wait().await else {
            return;
        };
        match msg {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } => {
                pty = Some(PtyRequest {
                    term,
                    cols: col_width,
                    rows: row_height,
                    pix_width,
                    pix_height,
                    modes: terminal_modes,
                });
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => {
                if env_allowed(&variable_name) && env.len() < MAX_ENV_VARS {
                    env.push((variable_name, variable_value));
                }
            }
            ChannelMsg::Exec { command, .. } => {
                exec(&ctx, channel, command, pty, env).await;
                return;
            }
            // Refused by the handler (failure reply and close); wait for the close.
            ChannelMsg::RequestShell { .. } | ChannelMsg::RequestSubsystem { .. } => {}
            ChannelMsg::Close | ChannelMsg::Eof => return,
            _ => {}
        }
    }
}

/// Decides an exec request and runs or refuses it.
async fn exec(
    ctx: &ChannelContext,
    channel: Channel<Msg>,
    command: Vec<u8>,
    pty: Option<PtyRequest>,
    env: Vec<(String, String)>,
) {
    let target = &ctx.access.target;
    if command.len() > MAX_COMMAND_BYTES {
        tracing::warn!(bytes = command.len(), "command line too long; refused");
        refuse(
            channel,
            &format!(
                "gatehouse: denied by rule line-too-long: command line over {MAX_COMMAND_BYTES} bytes\n"
            ),
        )
        .await;
        return;
    }
    let decision = match ctx.gateway.policies.policy(&target.policy) {
        Some(policy) => policy::decide(policy, &command),
        // Fail closed: a target naming a policy that is not loaded runs nothing.
        None => Decision {
            decision: Action::Hold,
            rule: "missing-policy".into(),
            reason: format!("policy {:?} is not loaded", target.policy),
            commands: Vec::new(),
            reviewers: None,
            approvals_required: 1,
        },
    };
    let line = String::from_utf8_lossy(&command);
    tracing::info!(
        command = %line,
        decision = ?decision.decision,
        rule = %decision.rule,
        "exec decided"
    );
    match decision.decision {
        Action::Deny => {
            let msg = format!(
                "gatehouse: denied by rule {}: {}\n",
                decision.rule,
                one_line(&decision.reason)
            );
            refuse(channel, &msg).await;
        }
        Action::Hold => {
            // Until approvals exist a hold is refused like a deny (fail closed).
            let msg = format!(
                "gatehouse: held by rule {}: approval required ({})\n",
                decision.rule,
                one_line(&decision.reason)
            );
            refuse(channel, &msg).await;
        }
        Action::Allow => bridge(ctx, channel, command, pty, env).await,
    }
}

/// Keeps a reason to one line so that the stderr contract (one line) holds.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Reports a refusal: one stderr line, exit status 126, EOF, close.
async fn refuse(channel: Channel<Msg>, line: &str) {
    let _ = channel
        .extended_data_bytes(1, line.as_bytes().to_vec())
        .await;
    let _ = channel.exit_status(EXIT_REFUSED).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// Opens the upstream channel, runs the command there and copies both ways until it ends.
async fn bridge(
    ctx: &ChannelContext,
    channel: Channel<Msg>,
    command: Vec<u8>,
    pty: Option<PtyRequest>,
    env: Vec<(String, String)>,
) {
    let target = &ctx.access.target;
    let upstream = match ctx.gateway.pool.open_channel(&ctx.access).await {
        Ok(up) => up,
        Err(err) => {
            tracing::error!(error = %err, "upstream unavailable");
            let _ = channel
                .extended_data_bytes(1, format!("gatehouse: {err}\n").into_bytes())
                .await;
            let _ = channel.exit_status(EXIT_UPSTREAM_FAILED).await;
            let _ = channel.eof().await;
            let _ = channel.close().await;
            return;
        }
    };
    let up = &upstream.channel;
    let started = async {
        if let Some(p) = &pty {
            up.request_pty(
                false,
                &p.term,
                p.cols,
                p.rows,
                p.pix_width,
                p.pix_height,
                &p.modes,
            )
            .await?;
        }
        for (name, value) in &env {
            up.set_env(false, name.as_str(), value.as_str()).await?;
        }
        up.exec(true, command).await
    };
    if let Err(err) = started.await {
        tracing::error!(error = %err, target_name = %target.name, "upstream exec failed");
        let _ = channel
            .extended_data_bytes(
                1,
                format!(
                    "gatehouse: target {} failed to start the command\n",
                    target.name
                )
                .into_bytes(),
            )
            .await;
        let _ = channel.exit_status(EXIT_UPSTREAM_FAILED).await;
        let _ = channel.eof().await;
        let _ = channel.close().await;
        return;
    }

    let crate::upstream::UpstreamChannel {
        channel: up_channel,
        permit,
    } = upstream;
    let status = super::bridge::run(channel, up_channel, ctx.handle.clone()).await;
    drop(permit);
    tracing::info!(exit_status = ?status, "exec finished");
}
