//! The approvals part of an exec whose decision is Hold: a grant from an earlier approval runs
//! at once (exactly once); return mode answers 75 with the request id; wait mode keeps the
//! agent's channel open until a reviewer decides, the request expires or the agent goes away.
//! The approvals store does the bookkeeping; this module talks to the agent and the recording.

use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use super::channel::{one_line, refuse, ChannelContext, EXIT_HELD_RETURN, EXIT_REFUSED};
use super::recording::ExecRecording;
use crate::approvals::{NewHold, Outcome};
use crate::config::ApprovalMode;
use crate::policy::Decision;

/// Stdin bytes kept from an agent while its command is held; past this gatehouse stops reading
/// (back-pressure) until the command starts.
const MAX_EARLY_INPUT: usize = 1024 * 1024;

/// What became of a held command.
pub(super) enum HoldResult {
    /// Approved (now, or earlier as a grant): run it.
    Run,
    /// Refused, expired, cancelled or returned (75): the exec ended with this status.
    Ended(u32),
}

/// The approvals part of an exec: grants, return mode, wait mode.
pub(super) async fn hold(
    ctx: &ChannelContext,
    channel: &mut Channel<Msg>,
    command: &[u8],
    decision: &Decision,
    env: &[(String, String)],
    recording: &ExecRecording,
    early: &mut Vec<ChannelMsg>,
) -> HoldResult {
    let gw = &ctx.gateway;
    let approvals = &gw.approvals;
    let target = &ctx.access.target;
    let identity = &ctx.identity.identity;
    // An approval given earlier (return mode, or while gatehouse restarted) runs exactly once.
    let grant = crate::store::blocking(|| approvals.take_grant(identity, &target.name, command));
    if let Some(granted) = grant {
        recording
            .marker(&format!("approved {} (resent after approval)", granted.id))
            .await;
        return HoldResult::Run;
    }
    let return_mode = target.approval == ApprovalMode::Return
        || env
            .iter()
            .any(|(k, v)| k == "GATEHOUSE_APPROVAL" && v.eq_ignore_ascii_case("return"));
    let held = match approvals.find_pending_same(identity, &target.name, command) {
        Some(existing) if return_mode => existing,
        _ => match crate::store::blocking(|| {
            approvals.hold(NewHold {
                requester: &ctx.identity,
                target: &target.name,
                upstream_user: &target.user,
                command,
                decision,
                session_id: &ctx.session_id.to_string(),
            })
        }) {
            Ok(h) => h,
            Err(err) => {
                tracing::error!(error = %err, "cannot persist the held command");
                let msg = format!(
                    "gatehouse: held by rule {}: approval required, but the request could not be stored\n",
                    decision.rule
                );
                refuse(channel, Some(recording), &msg, EXIT_REFUSED).await;
                return HoldResult::Ended(EXIT_REFUSED);
            }
        },
    };
    recording
        .marker(&format!(
            "held {} rule {}: {}",
            held.id,
            decision.rule,
            one_line(&decision.reason)
        ))
        .await;
    if return_mode {
        let msg = held.return_line(approvals.settings().grant_ttl);
        refuse(channel, Some(recording), &msg, EXIT_HELD_RETURN).await;
        return HoldResult::Ended(EXIT_HELD_RETURN);
    }

    let waiting = held.waiting_line(approvals.settings().wait_timeout);
    recording.output(waiting.clone().into()).await;
    if channel
        .extended_data_bytes(1, waiting.into_bytes())
        .await
        .is_err()
    {
        crate::store::blocking(|| approvals.cancel(&held.id));
        return HoldResult::Ended(EXIT_REFUSED);
    }
    // Wait for the reviewer while watching the agent: if it goes away, the request is
    // cancelled; stdin it sends meanwhile is kept (bounded) for the command.
    let outcome = {
        let wait = approvals.wait(&held.id);
        tokio::pin!(wait);
        let mut kept = 0usize;
        loop {
            tokio::select! {
                outcome = &mut wait => break Some(outcome),
                msg = channel.wait(), if kept < MAX_EARLY_INPUT => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        kept += data.len();
                        early.push(ChannelMsg::Data { data });
                    }
                    Some(ChannelMsg::Eof) => early.push(ChannelMsg::Eof),
                    Some(ChannelMsg::Close) | None => break None,
                    Some(_) => {}
                },
            }
        }
    };
    let Some(outcome) = outcome else {
        crate::store::blocking(|| approvals.cancel(&held.id));
        recording
            .marker(&format!("cancelled {}: the agent went away", held.id))
            .await;
        return HoldResult::Ended(EXIT_REFUSED);
    };
    match &outcome {
        Outcome::Approved => {
            let by = approvals
                .get(&held.id)
                .map(|h| {
                    h.decisions
                        .iter()
                        .filter(|d| d.approve)
                        .map(|d| d.reviewer.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            recording.marker(&format!("approved by {by}")).await;
            HoldResult::Run
        }
        other => {
            let label = match other {
                Outcome::Denied { reviewer, .. } => format!("denied by {reviewer}"),
                Outcome::Expired => "expired".to_string(),
                Outcome::Cancelled => "cancelled".to_string(),
                _ => "refused".to_string(),
            };
            recording.marker(&label).await;
            let msg = other
                .refusal_line(&held.id)
                .unwrap_or_else(|| format!("gatehouse: request {} refused\n", held.id));
            refuse(channel, Some(recording), &msg, EXIT_REFUSED).await;
            HoldResult::Ended(EXIT_REFUSED)
        }
    }
}
