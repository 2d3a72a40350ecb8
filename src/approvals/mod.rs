//! Just-in-time approval of held commands (issue 5): requests, reviewer decisions, waiting,
//! single-use grants, the reviewer console's exec commands and the notification webhook.
//!
//! The policy says Hold; the gateway calls [`Approvals::hold`] and then either waits
//! ([`Approvals::wait`], woken by a per-request `watch` channel the moment a reviewer decides,
//! never by polling) or, in return mode, answers 75 at once and later turns the byte-identical
//! resend into a run with [`Approvals::take_grant`]. Reviewers decide with
//! [`Approvals::decide`] (console screen or `approve ID` over exec, see [`console`]). Every
//! change is written to the sled tree `approvals` and flushed before it becomes visible (so a
//! crash cannot make a used grant usable again), and broadcast as an [`ApprovalEvent`] for the
//! audit log and the console.
//!
//! How the gateway uses it, per held exec (always from a spawned task, never inside a russh
//! callback):
//! - return mode: [`Approvals::take_grant`] → run it; else [`Approvals::find_pending_same`] →
//!   exit 75 with that id; else [`Approvals::hold`] → exit 75 ([`HeldCommand::return_line`]).
//! - wait mode: `take_grant` as above (an approval made while gatehouse was down), else `hold`,
//!   print [`HeldCommand::waiting_line`], then [`Approvals::wait`]; `Approved` → run, otherwise
//!   [`Outcome::refusal_line`] and exit 126; if the client goes away, [`Approvals::cancel`].
//!
//! Expiry needs no background task: every access first expires what is overdue, and a waiter's
//! timeout ends at the request's `expires`. This module knows nothing of SSH: it takes a
//! verified [`CertIdentity`] and bytes, and gives back states.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{broadcast, watch};

use crate::identity::ca::CertIdentity;
use crate::store::{Store, StoreError};

pub mod console;
mod request;
mod store;
mod wait;
mod webhook;

#[cfg(test)]
mod tests;

pub use console::{run_console_command, run_console_words, ConsoleReply};
pub use request::{
    ApprovalEvent, BadRequestId, EventKind, HeldCommand, NewHold, Outcome, RequestId, RequestState,
    RequestView, ReviewDecision, REQUEST_ID_LEN,
};
pub use store::TREE;
pub use webhook::{
    notify_webhook, webhook_body, WebhookError, MAX_WEBHOOK_IN_FLIGHT, MAX_WEBHOOK_QUEUED,
    WEBHOOK_ATTEMPTS, WEBHOOK_ATTEMPT_TIMEOUT, WEBHOOK_BACKOFF,
};

/// Events buffered per subscriber; one that falls further behind gets `Lagged` and should
/// re-read [`Approvals::pending`] (the console does).
pub const EVENT_CAPACITY: usize = 1024;

/// Attempts to find an unused random id before giving up (40 bits: a second try is already
/// vanishingly rare).
const ID_ATTEMPTS: usize = 8;

/// Settings (from `[approvals]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a pending request waits for reviewers (and a wait-mode client waits).
    pub wait_timeout: Duration,
    /// How long an approval stays usable (by the waiting client or a resend in return mode).
    pub grant_ttl: Duration,
    /// Reviewer group for rules that name none; the demo's reviewer certificate carries
    /// `group:reviewers`.
    pub default_reviewers: String,
    /// Further groups that may open the console (the groups the policy's rules name); the
    /// default group is always one.
    pub reviewer_groups: Vec<String>,
    /// URL notified of each new request (http:// only for now).
    pub webhook: Option<String>,
}

impl Default for ApprovalSettings {
    fn default() -> ApprovalSettings {
        ApprovalSettings {
            wait_timeout: Duration::from_secs(10 * 60),
            grant_ttl: Duration::from_secs(15 * 60),
            default_reviewers: "reviewers".to_string(),
            reviewer_groups: Vec::new(),
            webhook: None,
        }
    }
}

/// Approval errors. The decision errors (`NotReviewer` .. `NotPending`) are refusals a reviewer
/// sees; the store errors mean the request could not be recorded (the gateway then refuses
/// the command: fail closed).
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("approvals store: {0}")]
    Sled(#[from] sled::Error),
    #[error("approvals store: unreadable request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no request {0}")]
    NotFound(RequestId),
    #[error("{reviewer} is not in reviewer group {group:?} of request {id}")]
    NotReviewer {
        id: RequestId,
        reviewer: String,
        group: String,
    },
    #[error("{reviewer} cannot decide request {id}: it is their own")]
    OwnRequest { id: RequestId, reviewer: String },
    #[error("{reviewer} already decided request {id}")]
    AlreadyDecided { id: RequestId, reviewer: String },
    #[error("request {id} is {state}, not pending")]
    NotPending { id: RequestId, state: RequestState },
    #[error("no free request id after {ID_ATTEMPTS} attempts")]
    IdSpace,
}

impl ApprovalError {
    /// Whether this is a refused decision (as opposed to a missing request or a store failure).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ApprovalError::NotReviewer { .. }
                | ApprovalError::OwnRequest { .. }
                | ApprovalError::AlreadyDecided { .. }
        )
    }
}

/// A live request (pending, or approved and not yet run) and the channel its waiter watches.
struct LiveRequest {
    /// The current version (also in the store).
    held: HeldCommand,
    /// Wakes the waiting client when the state leaves Pending; a `watch` keeps the latest state,
    /// so a decision made before the waiter subscribes is not missed.
    state_tx: watch::Sender<RequestState>,
}

/// The held requests and their decisions. `Send + Sync`; share it in an `Arc`.
pub struct Approvals {
    /// Timeouts, default group, webhook.
    settings: ApprovalSettings,
    /// Where every change is written before it is published.
    store: store::RequestStore,
    /// Live requests by id. A std mutex: it is never held across an await, and every critical
    /// section is a map lookup plus one sled write.
    live: Mutex<HashMap<RequestId, LiveRequest>>,
    /// Every change, for the audit writer and the console (no polling).
    events: broadcast::Sender<ApprovalEvent>,
    /// Sends the webhook off the data path, with bounded concurrency.
    webhook: webhook::WebhookSender,
}

/// `now + d`, saturating.
fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    now.checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether the certificate carries `group:NAME`.
pub fn in_group(identity: &CertIdentity, group: &str) -> bool {
    identity
        .principals
        .iter()
        .any(|p| p.strip_prefix("group:") == Some(group))
}

impl Approvals {
    /// Opens the `approvals` tree, loads the live requests and expires the overdue ones (their
    /// clients are gone after a restart, so an approval becomes a grant for the resend).
    pub fn open(store: &Store, settings: ApprovalSettings) -> Result<Approvals, ApprovalError> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let approvals = Approvals {
            store: store::RequestStore::open(store)?,
            live: Mutex::new(HashMap::new()),
            events,
            webhook: webhook::WebhookSender::new(),
            settings,
        };
        {
            let mut live = approvals.lock();
            for held in approvals.store.all() {
                if held.state.is_live() {
                    let (state_tx, _) = watch::channel(held.state);
                    live.insert(held.id.clone(), LiveRequest { held, state_tx });
                }
            }
            approvals.sweep(&mut live, Utc::now());
        }
        Ok(approvals)
    }

    /// The settings in force.
    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    /// Records a held command (persisted before this returns), notifies subscribers and the
    /// webhook, and returns the request to name on stderr.
    pub fn hold(&self, req: NewHold<'_>) -> Result<HeldCommand, ApprovalError> {
        let now = Utc::now();
        let reviewers = req
            .decision
            .reviewers
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| self.settings.default_reviewers.clone());
        let mut held = HeldCommand {
            id: RequestId::random(),
            requester: req.requester.identity.clone(),
            serial: req.requester.serial,
            target: req.target.to_string(),
            upstream_user: req.upstream_user.to_string(),
            command: req.command.to_vec(),
            commands: req.decision.commands.clone(),
            rule: req.decision.rule.clone(),
            reason: req.decision.reason.clone(),
            reviewers,
            // Fail closed: a rule saying 0 must not mean "approved by nobody".
            approvals_required: req.decision.approvals_required.max(1),
            session_id: req.session_id.to_string(),
            created: now,
            expires: after(now, self.settings.wait_timeout),
            state: RequestState::Pending,
            decisions: Vec::new(),
            grant_expires: None,
        };
        let mut live = self.lock();
        let mut stored = false;
        for _ in 0..ID_ATTEMPTS {
            if self.store.insert_new(&held)? {
                stored = true;
                break;
            }
            held.id = RequestId::random();
        }
        if !stored {
            return Err(ApprovalError::IdSpace);
        }
        let (state_tx, _) = watch::channel(RequestState::Pending);
        live.insert(
            held.id.clone(),
            LiveRequest {
                held: held.clone(),
                state_tx,
            },
        );
        self.emit(EventKind::Held, &held);
        drop(live);
        if let Some(url) = &self.settings.webhook {
            self.webhook.send(url.clone(), held.clone());
        }
        Ok(held)
    }

    /// A reviewer's decision. Refused when the reviewer is not in the request's group, is the
    /// requester, already decided it, or the request is no longer pending. One deny ends it;
    /// `approvals_required` distinct approvals approve it and wake its waiter.
    pub fn decide(
        &self,
        id: &RequestId,
        reviewer: &CertIdentity,
        approve: bool,
        comment: Option<String>,
    ) -> Result<HeldCommand, ApprovalError> {
        let now = Utc::now();
        let mut live = self.lock();
        self.sweep(&mut live, now);
        let Some(entry) = live.get(id) else {
            return Err(match self.store.get(id)? {
                Some(held) => ApprovalError::NotPending {
                    id: id.clone(),
                    state: held.state,
                },
                None => ApprovalError::NotFound(id.clone()),
            });
        };
        let current = &entry.held;
        let who = reviewer.identity.clone();
        if current.requester == who {
            return Err(ApprovalError::OwnRequest {
                id: id.clone(),
                reviewer: who,
            });
        }
        if !in_group(reviewer, &current.reviewers) {
            return Err(ApprovalError::NotReviewer {
                id: id.clone(),
                reviewer: who,
                group: current.reviewers.clone(),
            });
        }
        if current.state != RequestState::Pending {
            return Err(ApprovalError::NotPending {
                id: id.clone(),
                state: current.state,
            });
        }
        if current.decisions.iter().any(|d| d.reviewer == who) {
            return Err(ApprovalError::AlreadyDecided {
                id: id.clone(),
                reviewer: who,
            });
        }
        let mut updated = current.clone();
        updated.decisions.push(ReviewDecision {
            reviewer: who.clone(),
            approve,
            at: now,
            comment: comment.clone(),
        });
        let mut events = vec![EventKind::Decided {
            reviewer: who,
            approve,
            comment,
        }];
        let to = if !approve {
            Some(RequestState::Denied)
        } else if updated.approvals() >= updated.approvals_required {
            updated.grant_expires = Some(after(now, self.settings.grant_ttl));
            Some(RequestState::Approved)
        } else {
            None
        };
        if let Some(to) = to {
            events.push(EventKind::StateChanged {
                from: updated.state,
                to,
            });
            updated.state = to;
        }
        self.commit(&mut live, updated.clone(), events)?;
        Ok(updated)
    }

    /// Pending requests, oldest first (expired ones are expired first, never listed).
    pub fn pending(&self) -> Vec<HeldCommand> {
        let mut live = self.lock();
        self.sweep(&mut live, Utc::now());
        let mut out: Vec<HeldCommand> = live
            .values()
            .filter(|e| e.held.state == RequestState::Pending)
            .map(|e| e.held.clone())
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        out
    }

    /// One request in any state.
    pub fn get(&self, id: &RequestId) -> Option<HeldCommand> {
        let mut live = self.lock();
        self.sweep(&mut live, Utc::now());
        if let Some(entry) = live.get(id) {
            return Some(entry.held.clone());
        }
        drop(live);
        match self.store.get(id) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(%id, error = %e, "approvals store read failed");
                None
            }
        }
    }

    /// The `n` most recent requests in any state, newest first. Reads the whole tree: meant for
    /// the console and scripts, not the data path.
    pub fn recent(&self, n: usize) -> Vec<HeldCommand> {
        {
            let mut live = self.lock();
            self.sweep(&mut live, Utc::now());
        }
        let mut all = self.store.all();
        all.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        all.truncate(n);
        all
    }

    /// Every change from now on (the audit writer and the console subscribe).
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// Whether this identity may use the reviewer console: a member of the default group, of a
    /// configured reviewer group, or of the group of a live request.
    pub fn is_reviewer(&self, identity: &CertIdentity) -> bool {
        if in_group(identity, &self.settings.default_reviewers)
            || self
                .settings
                .reviewer_groups
                .iter()
                .any(|g| in_group(identity, g))
        {
            return true;
        }
        self.lock()
            .values()
            .any(|e| in_group(identity, &e.held.reviewers))
    }

    /// Flushes the store. Every change is already flushed when it is made (see `store.rs`);
    /// this is for callers that want to say so.
    pub fn flush(&self) -> Result<(), ApprovalError> {
        self.store.flush()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, LiveRequest>> {
        // A panic while holding the lock cannot leave a half-written request: the store is
        // written before memory changes. So a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Persists `updated`, then makes it visible: memory, the waiter's channel, events. A store
    /// failure changes nothing.
    fn commit(
        &self,
        live: &mut HashMap<RequestId, LiveRequest>,
        updated: HeldCommand,
        events: Vec<EventKind>,
    ) -> Result<(), ApprovalError> {
        self.store.put(&updated)?;
        let state = updated.state;
        if let Some(entry) = live.get_mut(&updated.id) {
            entry.held = updated.clone();
            entry.state_tx.send_replace(state);
        }
        if !state.is_live() {
            live.remove(&updated.id);
        }
        for kind in events {
            self.emit(kind, &updated);
        }
        Ok(())
    }

    /// Moves a live request to `to` (used for expiry, cancel, execution).
    fn transition(
        &self,
        live: &mut HashMap<RequestId, LiveRequest>,
        id: &RequestId,
        to: RequestState,
    ) -> Result<Option<HeldCommand>, ApprovalError> {
        let Some(entry) = live.get(id) else {
            return Ok(None);
        };
        let mut updated = entry.held.clone();
        let from = updated.state;
        updated.state = to;
        self.commit(
            live,
            updated.clone(),
            vec![EventKind::StateChanged { from, to }],
        )?;
        Ok(Some(updated))
    }

    /// Expires pending requests past `expires` and grants past `grant_expires`.
    fn sweep(&self, live: &mut HashMap<RequestId, LiveRequest>, now: DateTime<Utc>) {
        let overdue: Vec<RequestId> = live
            .values()
            .filter(|e| match e.held.state {
                RequestState::Pending => e.held.expires <= now,
                RequestState::Approved => e.held.grant_expires.is_none_or(|g| g <= now),
                _ => false,
            })
            .map(|e| e.held.id.clone())
            .collect();
        for id in overdue {
            if let Err(e) = self.transition(live, &id, RequestState::Expired) {
                tracing::warn!(%id, error = %e, "could not record expiry");
            }
        }
    }

    fn emit(&self, kind: EventKind, held: &HeldCommand) {
        // No subscriber is not an error: the audit writer may not be attached in tests.
        let _ = self.events.send(ApprovalEvent {
            at: Utc::now(),
            kind,
            request: held.clone(),
        });
    }
}
