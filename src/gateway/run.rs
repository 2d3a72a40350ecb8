//! Runs an allowed (or approved) command on its target: the upstream channel, the pty, env and
//! exec requests, then the bridge until the command ends, and the masked-output audit record.
//!
//! The exec flow in `channel` decides and records; this module only carries out what was
//! decided. An upstream channel that is not used after all (a refusal that came after it was
//! opened) is closed here too, so the target's session slots are not leaked.

use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use super::channel::{
    refuse, ChannelContext, PtyRequest, AUDIT_REFUSED, EXIT_REFUSED, EXIT_UPSTREAM_FAILED,
};
use super::recording::ExecRecording;
use super::AuditFlush;
use crate::record::mask::MaskMode;
use crate::upstream::{UpstreamChannel, UpstreamError};

/// What an exec brings to the target.
pub(super) struct Exec {
    /// The agent's channel.
    pub(super) channel: Channel<Msg>,
    /// Stdin the agent sent while its command was held.
    pub(super) early: Vec<ChannelMsg>,
    /// The command line, exactly as decided.
    pub(super) command: Vec<u8>,
    /// The pty the agent asked for, requested upstream too.
    pub(super) pty: Option<PtyRequest>,
    /// The environment variables the agent was allowed to pass.
    pub(super) env: Vec<(String, String)>,
    /// An upstream channel opened while the decision was being recorded, if any (approved
    /// commands open theirs when they start).
    pub(super) upstream: Option<Result<UpstreamChannel, UpstreamError>>,
    /// The decision's audit record, whose flush to disk may still be running. Nothing
    /// reaches the agent before it is done.
    pub(super) audit: AuditFlush,
}

/// Closes an upstream channel that was opened but will not be used.
pub(super) async fn close_unused(upstream: Option<Result<UpstreamChannel, UpstreamError>>) {
    if let Some(Ok(up)) = upstream {
        let _ = up.channel.close().await;
    }
}

/// Runs the command upstream and bridges until it ends; returns its exit status.
pub(super) async fn run_upstream(
    ctx: &ChannelContext,
    exec: Exec,
    recording: ExecRecording,
) -> Option<u32> {
    let Exec {
        channel,
        early,
        command,
        pty,
        env,
        upstream,
        mut audit,
    } = exec;
    let target = &ctx.access.target;
    let opened = match upstream {
        Some(opened) => opened,
        None => ctx.gateway.pool.open_channel(&ctx.access).await,
    };
    let upstream = match opened {
        Ok(up) => up,
        Err(_) if !audit.durable().await => {
            refuse(&channel, Some(&recording), AUDIT_REFUSED, EXIT_REFUSED).await;
            return Some(EXIT_REFUSED);
        }
        Err(err) => {
            tracing::error!(error = %err, "upstream unavailable");
            refuse(
                &channel,
                Some(&recording),
                &format!("gatehouse: {err}\n"),
                EXIT_UPSTREAM_FAILED,
            )
            .await;
            return Some(EXIT_UPSTREAM_FAILED);
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
    let started = started.await;
    // The command is on its way; the agent hears of it once its decision is on disk. If the
    // flush fails, the command is killed and the agent refused (the log refuses every later
    // record too, so nothing else runs until a restart).
    if !audit.durable().await {
        tracing::error!("the decision could not be flushed to the audit log; stopping the command");
        let _ = up.signal(russh::Sig::KILL).await;
        let _ = up.close().await;
        refuse(&channel, Some(&recording), AUDIT_REFUSED, EXIT_REFUSED).await;
        return Some(EXIT_REFUSED);
    }
    if let Err(err) = started {
        tracing::error!(error = %err, target_name = %target.name, "upstream exec failed");
        let _ = up.close().await;
        let msg = format!(
            "gatehouse: target {} failed to start the command\n",
            target.name
        );
        refuse(&channel, Some(&recording), &msg, EXIT_UPSTREAM_FAILED).await;
        return Some(EXIT_UPSTREAM_FAILED);
    }
    let UpstreamChannel {
        channel: up_channel,
        permit,
        load,
    } = upstream;
    let record_input = ctx.gateway.config.recording.record_input;
    let agent_id = channel.id();
    let inflow = ctx.inflows.add(agent_id);
    // PTY output is masked same-length so that the screen keeps its layout.
    let masking = ctx.access.mask.clone().map(|(rules, mode)| {
        let mode = if pty.is_some() {
            MaskMode::SameLength
        } else {
            mode
        };
        (rules, mode)
    });
    let end = super::bridge::run(
        channel,
        early,
        up_channel,
        ctx.handle.clone(),
        recording.clone(),
        record_input,
        masking,
        inflow,
        load,
    )
    .await;
    // The agent's exit status and close are queued on its connection. This worker runs that
    // connection's task only when this one waits, so wait here once: the agent hears the end
    // before the bookkeeping below and the seal's hand-off.
    tokio::task::yield_now().await;
    ctx.inflows.remove(agent_id);
    drop(permit);
    if !end.masked.is_empty() {
        let summary = end
            .masked
            .iter()
            .map(|(kind, n)| format!("{kind}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        recording.marker(&format!("masked: {summary}")).await;
        ctx.gateway
            .audit_event(
                "output.masked",
                serde_json::json!({
                    "session_id": ctx.session_id.to_string(),
                    "identity": ctx.identity.identity,
                    "target": target.name,
                    "counts": end.masked,
                }),
            )
            .await;
    }
    tracing::info!(exit_status = ?end.status, masked = ?end.masked, "exec finished");
    end.status
}
