//! Persistence of held requests: one JSON document per request in the sled tree `approvals`,
//! keyed by id. Only this file knows the layout; `mod.rs` keeps the live requests in memory and
//! writes every change through here before it becomes visible.
//!
//! Every write is flushed before it returns. sled alone writes its log in the background every
//! 500 ms, and a crash inside that window would forget a change that was already acted on: an
//! approval whose grant a resend had just used would be usable again after the restart, and
//! the command would run twice. A flush is one fsync (about 1 ms here), paid once per hold,
//! decision and run: changes a person waits for, never per byte.

use crate::store::Store;

use super::request::{HeldCommand, RequestId};
use super::ApprovalError;

/// Name of the sled tree.
pub const TREE: &str = "approvals";

/// The `approvals` tree.
#[derive(Clone)]
pub(super) struct RequestStore {
    /// sled tree handle (cheap to clone; sled does its own locking).
    tree: sled::Tree,
}

impl RequestStore {
    pub(super) fn open(store: &Store) -> Result<RequestStore, ApprovalError> {
        Ok(RequestStore {
            tree: store.tree(TREE)?,
        })
    }

    /// Every request in the store. Entries that do not decode are skipped with a warning: a
    /// lost request fails closed (nothing runs without a readable approval).
    pub(super) fn all(&self) -> Vec<HeldCommand> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            match entry {
                Ok((key, value)) => match serde_json::from_slice::<HeldCommand>(&value) {
                    Ok(held) => out.push(held),
                    Err(e) => tracing::warn!(
                        key = %String::from_utf8_lossy(&key),
                        error = %e,
                        "skipping unreadable approval request"
                    ),
                },
                Err(e) => tracing::warn!(error = %e, "approvals store read failed"),
            }
        }
        out
    }

    /// One request.
    pub(super) fn get(&self, id: &RequestId) -> Result<Option<HeldCommand>, ApprovalError> {
        match self.tree.get(id.as_str())? {
            Some(value) => Ok(Some(serde_json::from_slice(&value)?)),
            None => Ok(None),
        }
    }

    /// Writes a new request, durably; false (and nothing written) if the id is already taken.
    pub(super) fn insert_new(&self, held: &HeldCommand) -> Result<bool, ApprovalError> {
        let value = serde_json::to_vec(held)?;
        let swapped = self
            .tree
            .compare_and_swap(held.id.as_str(), None::<&[u8]>, Some(value))?;
        if swapped.is_err() {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// Overwrites a request, durably.
    pub(super) fn put(&self, held: &HeldCommand) -> Result<(), ApprovalError> {
        let value = serde_json::to_vec(held)?;
        self.tree.insert(held.id.as_str(), value)?;
        self.flush()
    }

    /// Makes all writes durable (sled otherwise flushes in the background every 500 ms).
    pub(super) fn flush(&self) -> Result<(), ApprovalError> {
        self.tree.flush()?;
        Ok(())
    }
}
