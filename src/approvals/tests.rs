//! Unit tests for requests, decisions, waiting and grants (console and webhook tests live
//! beside their modules).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tempfile::TempDir;

use super::*;
use crate::policy::{Action, Decision};

pub(crate) fn ident(name: &str, groups: &[&str]) -> CertIdentity {
    let mut principals = vec![name.to_string()];
    principals.extend(groups.iter().map(|g| format!("group:{g}")));
    CertIdentity {
        identity: name.to_string(),
        principals,
        serial: 7,
        valid_before: u64::MAX,
    }
}

pub(crate) fn hold_decision(reviewers: Option<&str>, approvals_required: u32) -> Decision {
    Decision {
        decision: Action::Hold,
        rule: "service-restart".into(),
        reason: "restarting a service needs review".into(),
        commands: vec!["systemctl restart nginx".into()],
        reviewers: reviewers.map(str::to_string),
        approvals_required,
    }
}

/// A pending request as `hold` makes it (for webhook and console tests).
pub(crate) fn sample_held() -> HeldCommand {
    let now = Utc::now();
    HeldCommand {
        id: RequestId::random(),
        requester: "agent-1".into(),
        serial: 7,
        target: "web-1".into(),
        upstream_user: "deploy".into(),
        command: b"systemctl restart nginx".to_vec(),
        commands: vec!["systemctl restart nginx".into()],
        rule: "service-restart".into(),
        reason: "restarting a service needs review".into(),
        reviewers: "reviewers".into(),
        approvals_required: 1,
        session_id: "s-1".into(),
        created: now,
        expires: now + chrono::TimeDelta::minutes(10),
        state: RequestState::Pending,
        decisions: vec![],
        grant_expires: None,
    }
}

pub(crate) struct Fixture {
    /// Keeps the store directory alive for the test.
    _dir: TempDir,
    pub approvals: Arc<Approvals>,
}

pub(crate) fn open_with(settings: ApprovalSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let approvals = Arc::new(Approvals::open(&store, settings).unwrap());
    Fixture {
        _dir: dir,
        approvals,
    }
}

pub(crate) fn open() -> Fixture {
    open_with(ApprovalSettings::default())
}

pub(crate) fn hold_as(
    approvals: &Approvals,
    agent: &CertIdentity,
    command: &[u8],
    decision: &Decision,
) -> HeldCommand {
    approvals
        .hold(NewHold {
            requester: agent,
            target: "web-1",
            upstream_user: "deploy",
            command,
            decision,
            session_id: "s-1",
        })
        .unwrap()
}

fn agent() -> CertIdentity {
    ident("agent-1", &["agents"])
}
fn alice() -> CertIdentity {
    ident("alice", &["reviewers"])
}
fn bob() -> CertIdentity {
    ident("bob", &["reviewers", "sre"])
}

const CMD: &[u8] = b"systemctl restart nginx";

#[test]
fn hold_records_the_request() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 0));
    assert_eq!(held.state, RequestState::Pending);
    assert_eq!(held.reviewers, "reviewers", "default group");
    assert_eq!(held.approvals_required, 1, "0 is raised to 1: fail closed");
    assert_eq!((held.requester.as_str(), held.serial), ("agent-1", 7));
    assert_eq!(held.command, CMD);
    assert_eq!(f.approvals.pending(), vec![held.clone()]);
    assert_eq!(f.approvals.get(&held.id), Some(held));
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (pending, approved) = {
        let store = Store::open(dir.path()).unwrap();
        let approvals = Approvals::open(&store, ApprovalSettings::default()).unwrap();
        let decision = hold_decision(None, 1);
        let pending = hold_as(&approvals, &agent(), CMD, &decision);
        let approved = hold_as(
            &approvals,
            &agent(),
            b"systemctl restart php-fpm",
            &decision,
        );
        approvals
            .decide(&approved.id, &alice(), true, Some("ok".into()))
            .unwrap();
        approvals.flush().unwrap();
        (pending, approved)
    };
    let store = Store::open(dir.path()).unwrap();
    let approvals = Approvals::open(&store, ApprovalSettings::default()).unwrap();
    assert_eq!(approvals.pending(), vec![pending.clone()]);
    let got = approvals.get(&approved.id).unwrap();
    assert_eq!(got.state, RequestState::Approved);
    assert_eq!(got.decisions.len(), 1);
    // The waiting client is gone: the approval is a grant for the resend, once.
    let run = approvals.take_grant("agent-1", "web-1", b"systemctl restart php-fpm");
    assert_eq!(run.map(|h| h.id), Some(approved.id.clone()));
    assert!(approvals
        .take_grant("agent-1", "web-1", b"systemctl restart php-fpm")
        .is_none());
    // Approving the restored pending request after the restart makes a grant too.
    approvals.decide(&pending.id, &alice(), true, None).unwrap();
    assert!(approvals.take_grant("agent-1", "web-1", CMD).is_some());
    assert_eq!(approvals.recent(10).len(), 2);
}

#[test]
fn reopen_expires_overdue_requests() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ApprovalSettings {
        wait_timeout: Duration::from_millis(50),
        ..ApprovalSettings::default()
    };
    let id = {
        let store = Store::open(dir.path()).unwrap();
        let approvals = Approvals::open(&store, settings.clone()).unwrap();
        let id = hold_as(&approvals, &agent(), CMD, &hold_decision(None, 1)).id;
        approvals.flush().unwrap();
        id
    };
    std::thread::sleep(Duration::from_millis(80));
    let store = Store::open(dir.path()).unwrap();
    let approvals = Approvals::open(&store, settings).unwrap();
    assert!(approvals.pending().is_empty());
    assert_eq!(approvals.get(&id).unwrap().state, RequestState::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_is_woken_by_approval_within_milliseconds() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    let waiter = {
        let approvals = Arc::clone(&f.approvals);
        let id = held.id.clone();
        tokio::spawn(async move {
            let outcome = approvals.wait(&id).await;
            (outcome, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let approved_at = Instant::now();
    f.approvals.decide(&held.id, &alice(), true, None).unwrap();
    let (outcome, woken_at) = waiter.await.unwrap();
    let latency = woken_at.duration_since(approved_at);
    assert_eq!(outcome, Outcome::Approved);
    // A poller (2-10 s) could never do this; 100 ms leaves room for a loaded CI machine.
    assert!(
        latency < Duration::from_millis(100),
        "woken after {latency:?}"
    );
    let after = f.approvals.get(&held.id).unwrap();
    assert_eq!(
        after.state,
        RequestState::Executed,
        "marked once, by the waiter"
    );
    assert!(f.approvals.take_grant("agent-1", "web-1", CMD).is_none());
    assert_eq!(f.approvals.wait(&held.id).await, Outcome::AlreadyExecuted);
}

#[tokio::test]
async fn deny_ends_the_wait() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 2));
    let waiter = {
        let approvals = Arc::clone(&f.approvals);
        let id = held.id.clone();
        tokio::spawn(async move { approvals.wait(&id).await })
    };
    tokio::task::yield_now().await;
    let denied = f
        .approvals
        .decide(&held.id, &alice(), false, Some("use reload".into()))
        .unwrap();
    assert_eq!(denied.state, RequestState::Denied);
    assert_eq!(
        waiter.await.unwrap(),
        Outcome::Denied {
            reviewer: "alice".into(),
            comment: Some("use reload".into())
        }
    );
    assert!(f.approvals.pending().is_empty());
    let again = f.approvals.decide(&held.id, &bob(), true, None);
    assert!(matches!(
        again,
        Err(ApprovalError::NotPending {
            state: RequestState::Denied,
            ..
        })
    ));
}

#[tokio::test]
async fn wait_expires_at_the_deadline() {
    let f = open_with(ApprovalSettings {
        wait_timeout: Duration::from_millis(150),
        ..ApprovalSettings::default()
    });
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    let started = Instant::now();
    assert_eq!(f.approvals.wait(&held.id).await, Outcome::Expired);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Expired
    );
    let late = f.approvals.decide(&held.id, &alice(), true, None);
    assert!(matches!(
        late,
        Err(ApprovalError::NotPending {
            state: RequestState::Expired,
            ..
        })
    ));
}

#[test]
fn pending_never_lists_expired_requests() {
    let f = open_with(ApprovalSettings {
        wait_timeout: Duration::from_millis(30),
        ..ApprovalSettings::default()
    });
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    assert_eq!(f.approvals.pending().len(), 1);
    std::thread::sleep(Duration::from_millis(60));
    assert!(f.approvals.pending().is_empty());
    assert!(f
        .approvals
        .find_pending_same("agent-1", "web-1", CMD)
        .is_none());
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Expired
    );
}

#[test]
fn own_request_cannot_be_decided() {
    let f = open();
    // A requester who is also a reviewer.
    let both = ident("carol", &["reviewers"]);
    let held = hold_as(&f.approvals, &both, CMD, &hold_decision(None, 1));
    for approve in [true, false] {
        let err = f
            .approvals
            .decide(&held.id, &both, approve, None)
            .unwrap_err();
        assert!(matches!(err, ApprovalError::OwnRequest { .. }), "{err}");
        assert!(err.is_forbidden());
    }
    assert_eq!(f.approvals.get(&held.id).unwrap().decisions, vec![]);
}

#[test]
fn non_members_cannot_decide() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(Some("sre"), 1));
    assert_eq!(held.reviewers, "sre");
    // alice reviews for the default group, not for sre; an agent is in no reviewer group.
    for outsider in [alice(), ident("agent-2", &["agents"])] {
        let err = f
            .approvals
            .decide(&held.id, &outsider, true, None)
            .unwrap_err();
        assert!(matches!(err, ApprovalError::NotReviewer { .. }), "{err}");
    }
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Pending
    );
    let done = f.approvals.decide(&held.id, &bob(), true, None).unwrap();
    assert_eq!(done.state, RequestState::Approved);
}

#[test]
fn two_approvals_need_two_distinct_reviewers() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 2));
    let first = f.approvals.decide(&held.id, &alice(), true, None).unwrap();
    assert_eq!((first.state, first.approvals()), (RequestState::Pending, 1));
    assert!(first.grant_expires.is_none());
    let twice = f
        .approvals
        .decide(&held.id, &alice(), true, None)
        .unwrap_err();
    assert!(
        matches!(twice, ApprovalError::AlreadyDecided { .. }),
        "{twice}"
    );
    let also_not_deny = f
        .approvals
        .decide(&held.id, &alice(), false, None)
        .unwrap_err();
    assert!(matches!(
        also_not_deny,
        ApprovalError::AlreadyDecided { .. }
    ));
    assert!(f.approvals.take_grant("agent-1", "web-1", CMD).is_none());
    let second = f.approvals.decide(&held.id, &bob(), true, None).unwrap();
    assert_eq!(
        (second.state, second.approvals()),
        (RequestState::Approved, 2)
    );
    assert!(second.grant_expires.is_some());
}

#[test]
fn unknown_request() {
    let f = open();
    let id = RequestId::random();
    let err = f.approvals.decide(&id, &alice(), true, None).unwrap_err();
    assert!(matches!(err, ApprovalError::NotFound(_)));
    assert!(f.approvals.get(&id).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_is_used_exactly_once_under_concurrency() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    // Return mode: a resend while pending finds the same request.
    let same = f
        .approvals
        .find_pending_same("agent-1", "web-1", CMD)
        .unwrap();
    assert_eq!(same.id, held.id);
    assert!(f
        .approvals
        .find_pending_same("agent-1", "web-1", b"systemctl restart nginx ")
        .is_none());
    assert!(
        f.approvals.take_grant("agent-1", "web-1", CMD).is_none(),
        "not approved yet"
    );
    f.approvals.decide(&held.id, &alice(), true, None).unwrap();
    // Same identity, target and bytes only.
    assert!(f.approvals.take_grant("agent-2", "web-1", CMD).is_none());
    assert!(f.approvals.take_grant("agent-1", "web-2", CMD).is_none());
    assert!(f
        .approvals
        .take_grant("agent-1", "web-1", b"systemctl restart nginx;")
        .is_none());
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let approvals = Arc::clone(&f.approvals);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                approvals.take_grant("agent-1", "web-1", CMD)
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if let Some(run) = task.await.unwrap() {
            assert_eq!(run.id, held.id);
            assert_eq!(run.state, RequestState::Executed);
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Executed
    );
}

#[test]
fn grant_expires_unused() {
    let f = open_with(ApprovalSettings {
        grant_ttl: Duration::from_millis(50),
        ..ApprovalSettings::default()
    });
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    f.approvals.decide(&held.id, &alice(), true, None).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert!(f.approvals.take_grant("agent-1", "web-1", CMD).is_none());
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Expired
    );
}

#[tokio::test]
async fn cancel_ends_a_pending_request() {
    let f = open();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    let waiter = {
        let approvals = Arc::clone(&f.approvals);
        let id = held.id.clone();
        tokio::spawn(async move { approvals.wait(&id).await })
    };
    tokio::task::yield_now().await;
    f.approvals.cancel(&held.id);
    assert_eq!(waiter.await.unwrap(), Outcome::Cancelled);
    assert_eq!(
        f.approvals.get(&held.id).unwrap().state,
        RequestState::Cancelled
    );
    assert!(f.approvals.pending().is_empty());
    let late = f.approvals.decide(&held.id, &alice(), true, None);
    assert!(matches!(late, Err(ApprovalError::NotPending { .. })));
    assert_eq!(
        f.approvals.wait(&RequestId::random()).await,
        Outcome::Cancelled
    );
}

#[tokio::test]
async fn every_change_is_an_event() {
    let f = open();
    let mut events = f.approvals.subscribe();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    f.approvals
        .decide(&held.id, &alice(), true, Some("go".into()))
        .unwrap();
    assert!(f.approvals.take_grant("agent-1", "web-1", CMD).is_some());
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.request.id, held.id);
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        vec![
            EventKind::Held,
            EventKind::Decided {
                reviewer: "alice".into(),
                approve: true,
                comment: Some("go".into())
            },
            EventKind::StateChanged {
                from: RequestState::Pending,
                to: RequestState::Approved
            },
            EventKind::StateChanged {
                from: RequestState::Approved,
                to: RequestState::Executed
            },
        ]
    );
    // The audit writer stores events as JSON.
    let json = serde_json::to_value(EventKind::StateChanged {
        from: RequestState::Pending,
        to: RequestState::Denied,
    })
    .unwrap();
    assert_eq!(json["event"], "state_changed");
    assert_eq!(json["to"], "denied");
}

#[test]
fn reviewers_are_recognized() {
    let f = open_with(ApprovalSettings {
        reviewer_groups: vec!["dba".into()],
        ..ApprovalSettings::default()
    });
    assert!(f.approvals.is_reviewer(&alice()));
    assert!(f.approvals.is_reviewer(&ident("dana", &["dba"])));
    assert!(!f.approvals.is_reviewer(&agent()));
    // A group named only by a live request's rule counts while that request is live.
    let sre_only = ident("sam", &["sre"]);
    assert!(!f.approvals.is_reviewer(&sre_only));
    hold_as(&f.approvals, &agent(), CMD, &hold_decision(Some("sre"), 1));
    assert!(f.approvals.is_reviewer(&sre_only));
}

#[tokio::test]
async fn webhook_is_sent_on_hold_without_blocking() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let f = open_with(ApprovalSettings {
        webhook: Some(url),
        ..ApprovalSettings::default()
    });
    let started = Instant::now();
    let held = hold_as(&f.approvals, &agent(), CMD, &hold_decision(None, 1));
    assert!(started.elapsed() < Duration::from_millis(100));
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(held.id.as_str()) {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        received.extend_from_slice(&chunk[..n]);
    }
    conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
}

#[test]
fn approvals_is_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Approvals>();
    shared::<Arc<Approvals>>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_waiters_approved_in_bulk_each_run_once() {
    let f = open();
    let decision = hold_decision(None, 1);
    let mut waiters = Vec::new();
    for i in 0..50 {
        let command = format!("systemctl restart app-{i}");
        let held = hold_as(&f.approvals, &agent(), command.as_bytes(), &decision);
        let approvals = Arc::clone(&f.approvals);
        waiters.push(tokio::spawn(async move {
            (held.id.clone(), approvals.wait(&held.id).await)
        }));
    }
    assert_eq!(f.approvals.pending().len(), 50);
    for held in f.approvals.pending() {
        f.approvals.decide(&held.id, &alice(), true, None).unwrap();
    }
    for waiter in waiters {
        let (id, outcome) = waiter.await.unwrap();
        assert_eq!(outcome, Outcome::Approved, "{id}");
        assert_eq!(f.approvals.get(&id).unwrap().state, RequestState::Executed);
        assert_eq!(f.approvals.wait(&id).await, Outcome::AlreadyExecuted);
    }
    assert!(f.approvals.pending().is_empty());
}
