//! The held request itself: its id, its states, the reviewers' decisions, and the events a
//! state change emits. Plain data with serde; no locking, no I/O (that is `mod.rs` and
//! `store.rs`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::ca::CertIdentity;
use crate::policy::Decision;

/// RFC 4648 base32 alphabet, lowercase. It has no `0`, `1`, `8` or `9`, so an id read aloud or
/// copied from a terminal cannot confuse `0`/`o` or `1`/`l`.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Characters in an id: 8 base32 characters carry exactly 40 random bits (5 bytes, no padding).
pub const REQUEST_ID_LEN: usize = 8;

/// A request id: 8 lowercase base32 characters (40 random bits).
///
/// A newtype so that a request id can never be passed where a session id or an identity is
/// meant; it can only be made by [`RequestId::random`] or by parsing (which validates).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id (collisions are checked by the caller against the store).
    pub fn random() -> RequestId {
        let bytes: [u8; 5] = rand::random();
        let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let id = (0..REQUEST_ID_LEN)
            .rev()
            .map(|i| {
                let index = (bits >> (i * 5)) & 0x1f;
                ALPHABET.get(index as usize).map_or('a', |c| char::from(*c))
            })
            .collect();
        RequestId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why text is not a request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a request id (8 characters a-z, 2-7)")]
pub struct BadRequestId(pub String);

impl FromStr for RequestId {
    type Err = BadRequestId;

    /// Accepts either case (people retype ids) and normalizes to lowercase.
    fn from_str(s: &str) -> Result<RequestId, BadRequestId> {
        let lower = s.to_ascii_lowercase();
        let valid = lower.len() == REQUEST_ID_LEN && lower.bytes().all(|b| ALPHABET.contains(&b));
        if valid {
            Ok(RequestId(lower))
        } else {
            Err(BadRequestId(s.to_string()))
        }
    }
}

impl TryFrom<String> for RequestId {
    type Error = BadRequestId;
    fn try_from(s: String) -> Result<RequestId, BadRequestId> {
        s.parse()
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a request is in its life. Only `Pending` and `Approved` (an unused grant) are live;
/// the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for reviewers.
    Pending,
    /// Enough reviewers approved; runs once, by the waiting client or a resend (grant).
    Approved,
    /// A reviewer denied it.
    Denied,
    /// Nobody decided before `expires`, or an approval's grant ran out unused.
    Expired,
    /// The waiting client went away.
    Cancelled,
    /// The approved command was started (exactly once).
    Executed,
}

impl RequestState {
    /// Whether the request can still change (pending, or approved and not yet run).
    pub fn is_live(self) -> bool {
        matches!(self, RequestState::Pending | RequestState::Approved)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
            RequestState::Executed => "executed",
        })
    }
}

/// One reviewer's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    /// The reviewer's identity (certificate key id), for the audit log and the
    /// one-decision-per-reviewer rule.
    pub reviewer: String,
    /// Approve or deny; a single deny ends the request.
    pub approve: bool,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// Free text for the requester ("use reload, not restart"), shown on denial.
    pub comment: Option<String>,
}

/// A command held for review, as persisted (JSON in the `approvals` tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCommand {
    /// Short id reviewers type and agents see on stderr.
    pub id: RequestId,
    /// The requesting identity; it may not decide its own request, and only it may use the grant.
    pub requester: String,
    /// The requester's certificate serial, so the audit trail names the exact credential.
    pub serial: u64,
    /// The target the command is for; a grant is only good for this target.
    pub target: String,
    /// The account on the target the command would run as (shown to reviewers).
    pub upstream_user: String,
    /// The exact bytes the agent sent; only byte-identical resends use the grant, so what runs is
    /// exactly what was approved.
    #[serde(with = "command_bytes")]
    pub command: Vec<u8>,
    /// The normalized commands the policy found (what reviewers actually read).
    pub commands: Vec<String>,
    /// The rule that held it.
    pub rule: String,
    /// The rule's reason.
    pub reason: String,
    /// The reviewer group (`group:NAME` principal without the prefix) allowed to decide.
    pub reviewers: String,
    /// Distinct approvals needed (at least 1).
    pub approvals_required: u32,
    /// The SSH session that asked, to join audit lines and recordings.
    pub session_id: String,
    /// When it was held.
    pub created: DateTime<Utc>,
    /// When a still-pending request expires.
    pub expires: DateTime<Utc>,
    /// Where it is in its life.
    pub state: RequestState,
    /// Every decision so far, in order.
    pub decisions: Vec<ReviewDecision>,
    /// Once approved: the end of the window in which it can be run (by the waiter or a resend).
    pub grant_expires: Option<DateTime<Utc>>,
}

impl HeldCommand {
    /// Distinct reviewers who approved so far.
    pub fn approvals(&self) -> u32 {
        let mut approvers: Vec<&str> = self
            .decisions
            .iter()
            .filter(|d| d.approve)
            .map(|d| d.reviewer.as_str())
            .collect();
        approvers.sort_unstable();
        approvers.dedup();
        u32::try_from(approvers.len()).unwrap_or(u32::MAX)
    }

    /// The command as text for display (invalid UTF-8 replaced; the stored bytes stay exact).
    pub fn command_text(&self) -> String {
        String::from_utf8_lossy(&self.command).into_owned()
    }

    /// Whether this request is for the same identity, target and byte-identical command.
    pub fn same_as(&self, requester: &str, target: &str, command: &[u8]) -> bool {
        self.requester == requester && self.target == target && self.command == command
    }
}

/// The public shape of a request (`approvals --json`, the webhook body): stable field names
/// for scripts (`identity`, `created_at`), command as text.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    /// Request id.
    pub id: RequestId,
    /// Current state.
    pub state: RequestState,
    /// The requesting identity.
    pub identity: String,
    /// Its certificate serial.
    pub serial: u64,
    /// Target name.
    pub target: String,
    /// Account on the target.
    pub upstream_user: String,
    /// The command line (invalid UTF-8 replaced for display).
    pub command: String,
    /// Normalized commands found by the policy.
    pub commands: Vec<String>,
    /// Rule that held it.
    pub rule: String,
    /// The rule's reason.
    pub reason: String,
    /// Group that may decide.
    pub reviewers: String,
    /// Distinct approvals so far.
    pub approvals: u32,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// Decisions so far.
    pub decisions: Vec<ReviewDecision>,
    /// SSH session that asked.
    pub session_id: String,
    /// When it was held.
    pub created_at: DateTime<Utc>,
    /// When it expires if nobody decides.
    pub expires_at: DateTime<Utc>,
    /// Once approved: end of the grant window.
    pub grant_expires_at: Option<DateTime<Utc>>,
}

impl From<&HeldCommand> for RequestView {
    fn from(h: &HeldCommand) -> RequestView {
        RequestView {
            id: h.id.clone(),
            state: h.state,
            identity: h.requester.clone(),
            serial: h.serial,
            target: h.target.clone(),
            upstream_user: h.upstream_user.clone(),
            command: h.command_text(),
            commands: h.commands.clone(),
            rule: h.rule.clone(),
            reason: h.reason.clone(),
            reviewers: h.reviewers.clone(),
            approvals: h.approvals(),
            approvals_required: h.approvals_required,
            decisions: h.decisions.clone(),
            session_id: h.session_id.clone(),
            created_at: h.created,
            expires_at: h.expires,
            grant_expires_at: h.grant_expires,
        }
    }
}

/// The agent-facing stderr lines (the ARCHITECTURE contract: one line starting `gatehouse: `,
/// naming the rule, the reason and the request id). Newlines in rule or reason become spaces.
impl HeldCommand {
    /// Wait mode, printed before waiting.
    pub fn waiting_line(&self, wait_timeout: std::time::Duration) -> String {
        format!(
            "gatehouse: held by rule {} ({}): {}: waiting for approval, up to {}\n",
            one_line(&self.rule),
            self.id,
            one_line(&self.reason),
            short_duration(wait_timeout)
        )
    }

    /// Return mode, printed with exit status 75.
    pub fn return_line(&self, grant_ttl: std::time::Duration) -> String {
        format!(
            "gatehouse: held by rule {} ({}): {}: after approval, resend the same command within {}\n",
            one_line(&self.rule),
            self.id,
            one_line(&self.reason),
            short_duration(grant_ttl)
        )
    }
}

impl Outcome {
    /// The refusal line for a wait that did not end in approval (exit status 126); `None` for
    /// `Approved`.
    pub fn refusal_line(&self, id: &RequestId) -> Option<String> {
        Some(match self {
            Outcome::Approved => return None,
            Outcome::Denied { reviewer, comment } => match comment {
                Some(c) => format!(
                    "gatehouse: denied by {}: {}\n",
                    one_line(reviewer),
                    one_line(c)
                ),
                None => format!(
                    "gatehouse: denied by {} (request {id})\n",
                    one_line(reviewer)
                ),
            },
            Outcome::Expired => format!("gatehouse: request {id} expired without a decision\n"),
            Outcome::Cancelled => format!("gatehouse: request {id} was cancelled\n"),
            Outcome::AlreadyExecuted => {
                format!("gatehouse: request {id} was already run once (approvals are single-use)\n")
            }
        })
    }
}

/// Newlines (and other control characters) as spaces, so a line stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `10m`, `90s`, `2h`.
fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What the gateway passes to [`super::Approvals::hold`].
#[derive(Debug, Clone, Copy)]
pub struct NewHold<'a> {
    /// The verified certificate of the agent.
    pub requester: &'a CertIdentity,
    /// Target name (login name).
    pub target: &'a str,
    /// Account on the target.
    pub upstream_user: &'a str,
    /// Exact command bytes from the exec request.
    pub command: &'a [u8],
    /// The policy's Hold decision (rule, reason, commands, reviewers, approvals_required).
    pub decision: &'a Decision,
    /// SSH session id, for audit.
    pub session_id: &'a str,
}

/// How a wait ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved: run the command now (the request is already marked executed).
    Approved,
    /// A reviewer denied it: `gatehouse: denied by REVIEWER: COMMENT`, exit 126.
    Denied {
        /// Who denied.
        reviewer: String,
        /// Their comment, if any.
        comment: Option<String>,
    },
    /// Nobody decided in time: exit 126.
    Expired,
    /// Cancelled, or the id is unknown: exit 126.
    Cancelled,
    /// Approved, but already run by another client (a resend used the grant): exit 126.
    AlreadyExecuted,
}

/// What changed, for the audit log and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A command was held (new request).
    Held,
    /// A reviewer decided (also emitted when that decision does not complete the request).
    Decided {
        /// The reviewer's identity.
        reviewer: String,
        /// Approve or deny.
        approve: bool,
        /// Their comment.
        comment: Option<String>,
    },
    /// The request's state changed.
    StateChanged {
        /// Before.
        from: RequestState,
        /// After.
        to: RequestState,
    },
}

/// One change to one request, broadcast to subscribers (audit writer, console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The request after the change.
    pub request: HeldCommand,
}

/// Serializes command bytes as a JSON string when they are UTF-8 (readable in the store and in
/// `approvals --json`), otherwise as an array of bytes; reads either back byte-exact.
mod command_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => text.serialize(s),
            Err(_) => bytes.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => text.into_bytes(),
            Repr::Bytes(bytes) => bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn held(command: Vec<u8>) -> HeldCommand {
        HeldCommand {
            id: RequestId::random(),
            requester: "agent".into(),
            serial: 1,
            target: "web-1".into(),
            upstream_user: "deploy".into(),
            command,
            commands: vec![],
            rule: "r".into(),
            reason: "why".into(),
            reviewers: "reviewers".into(),
            approvals_required: 1,
            session_id: "s".into(),
            created: Utc::now(),
            expires: Utc::now(),
            state: RequestState::Pending,
            decisions: vec![],
            grant_expires: None,
        }
    }

    #[test]
    fn ids_are_eight_base32_chars_and_unique() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = RequestId::random();
            assert_eq!(id.as_str().len(), REQUEST_ID_LEN);
            assert!(id.as_str().bytes().all(|b| ALPHABET.contains(&b)), "{id}");
            assert_eq!(id.as_str().parse::<RequestId>().as_ref(), Ok(&id));
            seen.insert(id);
        }
        // 40 bits: a collision among 10k is ~5e-5 likely; the store also checks.
        assert!(seen.len() >= 9_999);
    }

    #[test]
    fn parse_validates_and_normalizes() {
        assert_eq!(
            "ABCD2345".parse::<RequestId>().map(|i| i.to_string()),
            Ok("abcd2345".to_string())
        );
        for bad in [
            "",
            "abcd234",
            "abcd23456",
            "abcd2341",
            "abcd234o0",
            "abcd-234",
            "ab d2345",
        ] {
            assert!(bad.parse::<RequestId>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&RequestId("abcdefgh".into())).unwrap_or_default();
        assert_eq!(json, "\"abcdefgh\"");
        assert!(serde_json::from_str::<RequestId>("\"abc\"").is_err());
    }

    #[test]
    fn stderr_lines() {
        let id: RequestId = "abcd2345".parse().unwrap();
        let mut h = held(b"reboot".to_vec());
        h.id = id.clone();
        h.rule = "reboot".into();
        h.reason = "reboots need\nreview".into();
        assert_eq!(
            h.waiting_line(std::time::Duration::from_secs(600)),
            "gatehouse: held by rule reboot (abcd2345): reboots need review: waiting for approval, up to 10m\n"
        );
        assert!(h
            .return_line(std::time::Duration::from_secs(900))
            .ends_with("resend the same command within 15m\n"));
        let denied = Outcome::Denied {
            reviewer: "alice".into(),
            comment: Some("use reload".into()),
        };
        assert_eq!(
            denied.refusal_line(&id).as_deref(),
            Some("gatehouse: denied by alice: use reload\n")
        );
        assert_eq!(Outcome::Approved.refusal_line(&id), None);
        assert!(Outcome::Expired
            .refusal_line(&id)
            .is_some_and(|l| l.contains("abcd2345")));
    }

    #[test]
    fn command_bytes_round_trip_exactly() {
        for bytes in [
            b"systemctl restart nginx".to_vec(),
            vec![0xff, b'a', 0, 0xc3],
        ] {
            let h = held(bytes);
            let json = serde_json::to_string(&h).unwrap();
            let back: HeldCommand = serde_json::from_str(&json).unwrap();
            assert_eq!(back, h);
        }
        let json = serde_json::to_value(held(b"ls".to_vec())).unwrap();
        assert_eq!(json["command"], "ls");
    }
}
