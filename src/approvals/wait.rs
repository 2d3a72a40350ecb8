//! The requester's side: waiting for a decision (wait mode), cancelling when the client goes
//! away, and the single-use grant a resend takes (return mode, and every approval after a
//! restart). Each approved request is run at most once: whoever marks it `Executed` under the
//! lock first — the waiter or one resend — wins.

use chrono::Utc;

use super::request::{HeldCommand, Outcome, RequestId, RequestState};
use super::Approvals;

impl Approvals {
    /// Waits until the request is decided or expires. Woken by the request's `watch` channel
    /// the moment a reviewer decides (no polling); gives up at the request's `expires`. On
    /// `Approved` the request is marked `Executed` before this returns (exactly once: a second
    /// waiter, or one that lost to a resend, gets `AlreadyExecuted`).
    ///
    /// Cancel-safe: dropping the future changes nothing; call [`Approvals::cancel`] when the
    /// client goes away.
    pub async fn wait(&self, id: &RequestId) -> Outcome {
        let watched = crate::store::blocking(|| {
            let mut live = self.lock();
            self.sweep(&mut live, Utc::now());
            live.get(id)
                .map(|entry| (entry.state_tx.subscribe(), entry.held.expires))
        });
        let Some((mut state_rx, expires)) = watched else {
            return crate::store::blocking(|| self.claim(id));
        };
        let left = (expires - Utc::now()).to_std().unwrap_or_default();
        let decided = tokio::time::timeout(
            left,
            state_rx.wait_for(|state| *state != RequestState::Pending),
        )
        .await
        .is_ok();
        drop(state_rx);
        crate::store::blocking(|| {
            if !decided {
                self.expire_if_pending(id);
            }
            self.claim(id)
        })
    }

    /// The waiting client went away: a still-pending request is cancelled. An approved one is
    /// left as a grant (a resend may still use it within the grant TTL).
    pub fn cancel(&self, id: &RequestId) {
        let mut live = self.lock();
        if live
            .get(id)
            .is_some_and(|e| e.held.state == RequestState::Pending)
        {
            if let Err(e) = self.transition(&mut live, id, RequestState::Cancelled) {
                tracing::warn!(%id, error = %e, "could not record cancellation");
            }
        }
    }

    /// Return mode: the approved, unused, unexpired request of this identity for this target
    /// with byte-identical command bytes, marked `Executed` and returned — at most once, however
    /// many resends race (the lock makes check-and-mark one step).
    pub fn take_grant(&self, requester: &str, target: &str, command: &[u8]) -> Option<HeldCommand> {
        let mut live = self.lock();
        self.sweep(&mut live, Utc::now());
        let id = live
            .values()
            .filter(|e| {
                e.held.state == RequestState::Approved && e.held.same_as(requester, target, command)
            })
            .min_by_key(|e| e.held.created)
            .map(|e| e.held.id.clone())?;
        match self.transition(&mut live, &id, RequestState::Executed) {
            Ok(held) => held,
            Err(e) => {
                // Not recorded as executed, so not run: fail closed.
                tracing::warn!(%id, error = %e, "could not record grant use");
                None
            }
        }
    }

    /// Return mode, resent while still pending: the existing request (same id for the agent,
    /// no duplicate for reviewers).
    pub fn find_pending_same(
        &self,
        requester: &str,
        target: &str,
        command: &[u8],
    ) -> Option<HeldCommand> {
        let mut live = self.lock();
        self.sweep(&mut live, Utc::now());
        live.values()
            .filter(|e| {
                e.held.state == RequestState::Pending && e.held.same_as(requester, target, command)
            })
            .min_by_key(|e| e.held.created)
            .map(|e| e.held.clone())
    }

    /// The waiter's timeout fired: expire the request if nobody decided meanwhile (the timer
    /// and the wall clock can disagree by a few ms, so this does not compare times).
    fn expire_if_pending(&self, id: &RequestId) {
        let mut live = self.lock();
        if live
            .get(id)
            .is_some_and(|e| e.held.state == RequestState::Pending)
        {
            if let Err(e) = self.transition(&mut live, id, RequestState::Expired) {
                tracing::warn!(%id, error = %e, "could not record expiry");
            }
        }
    }

    /// Turns the request's state into the waiter's outcome; an approval is consumed here.
    fn claim(&self, id: &RequestId) -> Outcome {
        let mut live = self.lock();
        self.sweep(&mut live, Utc::now());
        let approved = live
            .get(id)
            .is_some_and(|e| e.held.state == RequestState::Approved);
        if approved {
            return match self.transition(&mut live, id, RequestState::Executed) {
                Ok(Some(_)) => Outcome::Approved,
                Ok(None) => Outcome::Cancelled,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "could not record execution; refusing");
                    Outcome::Cancelled
                }
            };
        }
        let held = match live.get(id) {
            Some(entry) => Some(entry.held.clone()),
            None => {
                drop(live);
                self.get(id)
            }
        };
        let Some(held) = held else {
            return Outcome::Cancelled;
        };
        match held.state {
            // Only reachable if the timeout fired and the expiry could not be recorded.
            RequestState::Pending | RequestState::Expired => Outcome::Expired,
            RequestState::Approved | RequestState::Cancelled => Outcome::Cancelled,
            RequestState::Executed => Outcome::AlreadyExecuted,
            RequestState::Denied => {
                let denial = held.decisions.iter().rev().find(|d| !d.approve);
                Outcome::Denied {
                    reviewer: denial.map(|d| d.reviewer.clone()).unwrap_or_default(),
                    comment: denial.and_then(|d| d.comment.clone()),
                }
            }
        }
    }
}
