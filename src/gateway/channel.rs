//! One task per agent session channel: collect the requests that precede `exec`, decide the
//! command line, then refuse it, hold it for a reviewer, or bridge it to the target.
//!
//! Every exec is recorded (refused ones too) with markers for the command and each decision,
//! and every decision goes to the audit log before the agent hears of it. When the gateway
//! stops, an exec still open is cut off: its recording gets a session-end marker and is sealed
//! before the agent is told.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Pty};

use super::hold::{hold, HoldResult};
use super::recording::{Claim, ExecRecording};
use super::run::{close_unused, run_upstream, Exec};
use super::server::SessionId;
use super::shutdown::{cut_off, ShutdownListener};
use super::{env_allowed, Gateway};
use crate::identity::ca::CertIdentity;
use crate::policy::{self, Action, Decision};
use crate::record::cast::RecordingHeader;
use crate::upstream::TargetAccess;

/// Exit status for a command gatehouse refused (policy, reviewer or expiry).
pub const EXIT_REFUSED: u32 = 126;
/// Told to the agent when its command cannot be recorded and recording is mandatory.
const RECORDING_REFUSED: &str = "gatehouse: the session recording failed; refusing the command\n";
/// Told to the agent when its command's decision could not be put on disk in the audit log.
pub(super) const AUDIT_REFUSED: &str =
    "gatehouse: the audit log is unavailable; refusing the command\n";
/// Told to the agent when the live-sessions registry is full.
const LIVE_FULL: &str = "gatehouse: too many live sessions; refusing the command\n";
/// Exit status for a command held in return mode: retry the identical command after approval.
pub const EXIT_HELD_RETURN: u32 = 75;
/// Exit status when the target could not be reached (as OpenSSH's own client uses).
pub const EXIT_UPSTREAM_FAILED: u32 = 255;
/// Longest command line accepted in an exec request; longer ones are refused (the policy engine
/// holds anything over 64 KiB anyway).
pub const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// Characters of a command line in its `exec decided` log line (with its full length in bytes);
/// the audit log keeps the whole line. Log lines wait in a bounded queue when stderr is slow
/// (see `logging`), and a queue of 256 KiB lines would hold gigabytes.
const LOGGED_COMMAND_CHARS: usize = 1024;
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
    pub peer: SocketAddr,
    /// For replies that have no method on the channel itself (exit-signal).
    pub handle: Handle,
    /// This channel's number within the connection (recording names).
    pub channel_no: u32,
    /// The connection's agent→target queues, watched to narrow the agent's window.
    pub inflows: Inflows,
    /// This channel's place in the connection's limit; given back before the seal's wait.
    pub slot: ChannelSlot,
}

impl ChannelContext {
    /// Seals the exec's recording and waits for the seal. The channel is done for the agent by
    /// now, so its place in the connection's limit is given back first: the seal may wait a
    /// moment for others (see `sealer`), and a client running execs back to back must not find
    /// its connection full of channels it has closed.
    pub(super) async fn seal(&self, recording: &ExecRecording, status: Option<u32>) {
        self.slot.release();
        recording.finish(status).await;
    }
}

/// A session channel's place in its connection's limit ([`super::MAX_CHANNELS_PER_CONNECTION`]).
/// Given back by [`ChannelSlot::release`] or when dropped, whichever comes first.
pub struct ChannelSlot {
    /// The connection's count of places taken.
    taken: Arc<AtomicUsize>,
    /// Whether this one still holds its place (release is idempotent).
    held: AtomicBool,
}

impl ChannelSlot {
    /// Takes a place in `taken`, or `None` when all [`super::MAX_CHANNELS_PER_CONNECTION`] are.
    pub fn take(taken: &Arc<AtomicUsize>) -> Option<ChannelSlot> {
        if taken.fetch_add(1, Ordering::SeqCst) >= super::MAX_CHANNELS_PER_CONNECTION {
            taken.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ChannelSlot {
            taken: taken.clone(),
            held: AtomicBool::new(true),
        })
    }

    /// Gives the place back (once; later calls do nothing).
    pub fn release(&self) {
        if self.held.swap(false, Ordering::SeqCst) {
            self.taken.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The agent→target queues of one connection's bridged channels, by channel.
#[derive(Clone, Default)]
pub struct Inflows(
    Arc<std::sync::Mutex<std::collections::HashMap<russh::ChannelId, super::bridge::AgentInflow>>>,
);

impl Inflows {
    /// Registers a new queue for `id`.
    pub fn add(&self, id: russh::ChannelId) -> super::bridge::AgentInflow {
        let inflow = super::bridge::AgentInflow::new();
        if let Ok(mut map) = self.0.lock() {
            map.insert(id, inflow.clone());
        }
        inflow
    }

    /// Forgets the queue of a finished channel.
    pub fn remove(&self, id: russh::ChannelId) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&id);
        }
    }

    /// Whether any channel's queue is congested.
    pub fn congested(&self) -> bool {
        self.0
            .lock()
            .map(|map| map.values().any(super::bridge::AgentInflow::congested))
            .unwrap_or(true)
    }
}

/// A pty the agent asked for; requested upstream for the command it goes with.
pub(super) struct PtyRequest {
    /// TERM, for the recording header and the target's pty.
    pub(super) term: String,
    /// Size in characters (updated by window-change before the exec).
    pub(super) cols: u32,
    pub(super) rows: u32,
    /// Size in pixels, passed through.
    pub(super) pix_width: u32,
    pub(super) pix_height: u32,
    /// Terminal modes, passed through.
    pub(super) modes: Vec<(Pty, u32)>,
}

/// Runs one agent channel to its end; `shutdown` keeps the gateway's shutdown waiting until
/// this channel's recording is sealed.
pub async fn run(ctx: ChannelContext, mut channel: Channel<Msg>, mut shutdown: ShutdownListener) {
    let claim = Claim::start(
        ctx.gateway.config.server.recordings_dir.clone(),
        ctx.gateway.spares.clone(),
        ctx.identity.identity.clone(),
        ctx.access.target.name.clone(),
        ctx.session_id.to_string(),
        ctx.channel_no,
    );
    let mut pty = None;
    let mut env: Vec<(String, String)> = Vec::new();
    loop {
        let msg = tokio::select! {
            // Nothing was asked to run yet: nothing to record or seal.
            () = shutdown.notified() => {
                let _ = channel.close().await;
                return;
            }
            msg = channel.wait() => msg,
        };
        let Some(msg) = msg else {
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
            } if env_allowed(&variable_name) && env.len() < MAX_ENV_VARS => {
                env.push((variable_name, variable_value));
            }
            ChannelMsg::Exec { command, .. } => {
                exec(&ctx, channel, command, pty, env, claim, &mut shutdown).await;
                return;
            }
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                if let Some(p) = pty.as_mut() {
                    p.cols = col_width;
                    p.rows = row_height;
                }
            }
            // Refused by the handler (failure reply and close); wait for the close.
            ChannelMsg::RequestShell { .. } | ChannelMsg::RequestSubsystem { .. } => {}
            ChannelMsg::Close | ChannelMsg::Eof => return,
            _ => {}
        }
    }
}

/// Records an exec request and decides, runs, holds or refuses it — or cuts it off when the
/// gateway stops first.
async fn exec(
    ctx: &ChannelContext,
    channel: Channel<Msg>,
    command: Vec<u8>,
    pty: Option<PtyRequest>,
    env: Vec<(String, String)>,
    claim: Claim,
    shutdown: &mut ShutdownListener,
) {
    let gw = &ctx.gateway;
    let target = &ctx.access.target;
    let line = String::from_utf8_lossy(&command).into_owned();
    let header = RecordingHeader {
        session_id: ctx.session_id.to_string(),
        channel: ctx.channel_no,
        identity: ctx.identity.identity.clone(),
        serial: ctx.identity.serial,
        target: target.name.clone(),
        upstream_user: target.user.clone(),
        client: ctx.peer.to_string(),
        width: pty.as_ref().map(|p| clamp16(p.cols)).unwrap_or(80),
        height: pty.as_ref().map(|p| clamp16(p.rows)).unwrap_or(24),
        term: pty.as_ref().map(|p| p.term.clone()),
        title: format!(
            "{}@{}: {}",
            ctx.identity.identity,
            target.name,
            first_chars(&line, 120)
        ),
        pty: pty.is_some(),
    };
    let decision = decide(ctx, &command);
    tracing::info!(
        command = %first_chars(&line, LOGGED_COMMAND_CHARS),
        command_bytes = command.len(),
        decision = ?decision.decision,
        rule = %decision.rule,
        "exec decided"
    );
    let allowed = decision.decision == Action::Allow;
    // The recording is started in the files claimed when the channel opened, and the decision
    // written to the audit log (both on this thread, see `Gateway::audit_after`), while an
    // allowed command's upstream channel is being opened, usually already open (the pool
    // keeps a spare). Nothing runs before all are in place; the decision's flush to disk
    // goes on beside the rest, and nothing reaches the agent before it is done.
    let reserved = claim.take().await;
    let create = {
        let root = gw.config.server.recordings_dir.clone();
        let header = header.clone();
        move || match reserved {
            Some(reservation) => reservation.start(&header).map_err(|e| e.to_string()),
            // Claiming failed (or came to nothing): try once more, for the error if nothing else.
            None => ExecRecording::create(&root, &header),
        }
    };
    let (mut upstream, (created, audited)) = tokio::join!(
        async {
            match allowed {
                true => Some(gw.pool.open_channel(&ctx.access).await),
                false => None,
            }
        },
        // Last: it blocks this thread, once the channel open is under way.
        gw.audit_after(
            create,
            "command.decision",
            decision_record(ctx, &line, &decision)
        ),
    );
    let recording = ExecRecording::begin(
        created,
        &header,
        gw.config.recording.on_failure,
        gw.audit.clone(),
        gw.sealer.clone(),
    )
    .await;
    let recording = match recording {
        Ok(r) => r,
        Err(err) => {
            close_unused(upstream.take()).await;
            refuse(
                &channel,
                None,
                &format!("gatehouse: {err}; refusing the command\n"),
                EXIT_REFUSED,
            )
            .await;
            return;
        }
    };
    if !recording.marker(&format!("cmd: {line}")).await {
        close_unused(upstream.take()).await;
        refuse(&channel, None, RECORDING_REFUSED, EXIT_REFUSED).await;
        return;
    }
    // Listed in the console until this exec ends (the guard's drop); nothing runs unlisted.
    let Some(live) = super::live::register_exec(ctx, &line) else {
        close_unused(upstream.take()).await;
        refuse(&channel, Some(&recording), LIVE_FULL, EXIT_REFUSED).await;
        ctx.seal(&recording, Some(EXIT_REFUSED)).await;
        return;
    };
    let agent = channel.id();
    tokio::select! {
        // Checked first, so an exec that arrives during shutdown runs nothing.
        biased;
        () = shutdown.notified() => cut_off(ctx, agent, &recording).await,
        () = carry_out(
            ctx,
            Exec { channel, early: Vec::new(), command, pty, env, upstream, audit: audited },
            decision,
            &recording,
            &live,
        ) => {}
    }
}

/// The `command.decision` audit record.
fn decision_record(ctx: &ChannelContext, line: &str, decision: &Decision) -> serde_json::Value {
    serde_json::json!({
        "session_id": ctx.session_id.to_string(),
        "identity": ctx.identity.identity,
        "serial": ctx.identity.serial,
        "target": ctx.access.target.name,
        "command": line,
        "commands": decision.commands,
        "decision": decision.decision,
        "rule": decision.rule,
        "reason": decision.reason,
    })
}

/// The policy decision for a command line (lines over [`MAX_COMMAND_BYTES`] are denied, a
/// missing policy holds).
fn decide(ctx: &ChannelContext, command: &[u8]) -> Decision {
    let target = &ctx.access.target;
    if command.len() > MAX_COMMAND_BYTES {
        return Decision {
            decision: Action::Deny,
            rule: "line-too-long".into(),
            reason: format!("command line over {MAX_COMMAND_BYTES} bytes"),
            commands: Vec::new(),
            reviewers: None,
            approvals_required: 1,
        };
    }
    match ctx.gateway.policies.policy(&target.policy) {
        Some(policy) => policy::decide(policy, command),
        // Fail closed: a target naming a policy that is not loaded runs nothing.
        None => Decision {
            decision: Action::Hold,
            rule: "missing-policy".into(),
            reason: format!("policy {:?} is not loaded", target.policy),
            commands: Vec::new(),
            reviewers: None,
            approvals_required: 1,
        },
    }
}

/// Runs, holds or refuses a recorded and decided exec request.
async fn carry_out(
    ctx: &ChannelContext,
    exec: Exec,
    decision: Decision,
    recording: &ExecRecording,
    live: &super::live::LiveGuard,
) {
    let Exec {
        mut channel,
        mut early,
        command,
        pty,
        env,
        mut upstream,
        mut audit,
    } = exec;
    // An allowed command is sent once its decision is in the log, while the record is flushed
    // (`run_upstream` waits for the flush before anything reaches the agent); a refusal or a
    // hold is told to the agent at once, so its decision must be on disk first.
    if !audit.written() || (decision.decision != Action::Allow && !audit.durable().await) {
        // Fail closed: a decision that cannot be audited is not carried out.
        close_unused(upstream.take()).await;
        refuse(&channel, Some(recording), AUDIT_REFUSED, EXIT_REFUSED).await;
        ctx.seal(recording, Some(EXIT_REFUSED)).await;
        return;
    }

    match decision.decision {
        Action::Deny => {
            recording
                .marker(&format!(
                    "deny rule {}: {}",
                    decision.rule,
                    one_line(&decision.reason)
                ))
                .await;
            let msg = format!(
                "gatehouse: denied by rule {}: {}\n",
                decision.rule,
                one_line(&decision.reason)
            );
            refuse(&channel, Some(recording), &msg, EXIT_REFUSED).await;
            ctx.seal(recording, Some(EXIT_REFUSED)).await;
            return;
        }
        Action::Allow => {
            live.set_decision("allow");
            if !recording
                .marker(&format!("allow rule {}", decision.rule))
                .await
            {
                close_unused(upstream.take()).await;
                refuse(&channel, None, RECORDING_REFUSED, EXIT_REFUSED).await;
                return;
            }
        }
        Action::Hold => {
            live.set_decision("held");
            match hold(
                ctx,
                &mut channel,
                &command,
                &decision,
                &env,
                recording,
                &mut early,
            )
            .await
            {
                // Approved: the marker saying so must be on the record before it runs.
                HoldResult::Run if !recording.marker("run after approval").await => {
                    refuse(&channel, None, RECORDING_REFUSED, EXIT_REFUSED).await;
                    return;
                }
                HoldResult::Run => live.set_decision("approved"),
                HoldResult::Ended(status) => {
                    ctx.seal(recording, Some(status)).await;
                    return;
                }
            }
        }
    }
    let exec = Exec {
        channel,
        early,
        command,
        pty,
        env,
        upstream,
        audit,
    };
    let status = run_upstream(ctx, exec, recording.clone()).await;
    recording
        .marker(&match status {
            Some(s) => format!("exit {s}"),
            None => "closed".to_string(),
        })
        .await;
    ctx.seal(recording, status).await;
}

fn clamp16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The first `n` characters of a line, for titles.
fn first_chars(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// Keeps a reason to one line so that the stderr contract (one line) holds.
pub(super) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Reports a refusal: one stderr line (recorded too), the exit status, EOF, close.
pub(super) async fn refuse(
    channel: &Channel<Msg>,
    recording: Option<&ExecRecording>,
    line: &str,
    status: u32,
) {
    if let Some(r) = recording {
        r.output(line.to_owned().into()).await;
    }
    let _ = channel
        .extended_data_bytes(1, line.as_bytes().to_vec())
        .await;
    let _ = channel.exit_status(status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}
