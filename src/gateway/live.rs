//! The registry of live session channels, for the reviewer console's sessions list: who runs
//! what where, since when, and what was decided so far.
//!
//! An exec registers itself when its recording starts and holds a [`LiveGuard`]; dropping the
//! guard (every way an exec ends) removes the entry. The registry is bounded: it can hold every
//! channel the gateway could have open at once, and an exec it cannot register is refused
//! (nothing runs unseen). It stores display facts only, never data; the console reads a
//! snapshot once a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::{MAX_CHANNELS_PER_CONNECTION, MAX_CONNECTIONS};

/// Entries the registry holds at most: every session channel the gateway can have open.
pub const MAX_LIVE_SESSIONS: usize = MAX_CONNECTIONS * MAX_CHANNELS_PER_CONNECTION;
/// Characters of a command kept for display; the recording and the audit log have it whole.
const MAX_COMMAND_CHARS: usize = 512;

/// One live session channel, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEntry {
    /// The connection's id: ties the row to logs, audit records and the recording.
    pub session_id: String,
    /// The agent's certificate identity.
    pub identity: String,
    /// The target it runs on.
    pub target: String,
    /// The agent's address, when known.
    pub client: Option<SocketAddr>,
    /// The command line (first [`MAX_COMMAND_CHARS`] characters).
    pub command: String,
    /// When the exec arrived.
    pub started: DateTime<Utc>,
    /// The decision so far (`deciding`, `allow`, `held`, `approved`, ...).
    pub decision: String,
}

/// The entries and the key the next one gets.
#[derive(Default)]
struct Entries {
    /// Increasing keys, so iteration order is arrival order.
    next: u64,
    /// Live entries by key.
    map: BTreeMap<u64, LiveEntry>,
}

/// The live sessions of one gateway.
#[derive(Clone, Default)]
pub struct LiveSessions {
    /// Shared with every guard, which removes its entry on drop. A std mutex: every critical
    /// section is one map operation, never held across an await.
    entries: Arc<Mutex<Entries>>,
}

/// Keeps one entry registered; dropping it removes the entry.
pub struct LiveGuard {
    /// The registry the entry is in.
    entries: Arc<Mutex<Entries>>,
    /// The entry's key.
    key: u64,
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    // Every update is a single map operation, so a poisoned map is still consistent.
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveSessions {
    /// An empty registry.
    pub fn new() -> LiveSessions {
        LiveSessions::default()
    }

    /// Registers a session; `None` when the registry is full (the caller refuses the exec).
    pub fn register(&self, mut entry: LiveEntry) -> Option<LiveGuard> {
        if entry.command.chars().count() > MAX_COMMAND_CHARS {
            entry.command = entry.command.chars().take(MAX_COMMAND_CHARS).collect();
            entry.command.push('…');
        }
        let mut entries = lock(&self.entries);
        if entries.map.len() >= MAX_LIVE_SESSIONS {
            return None;
        }
        let key = entries.next;
        entries.next = entries.next.wrapping_add(1);
        entries.map.insert(key, entry);
        Some(LiveGuard {
            entries: self.entries.clone(),
            key,
        })
    }

    /// The newest `limit` entries, newest first.
    pub fn snapshot(&self, limit: usize) -> Vec<LiveEntry> {
        lock(&self.entries)
            .map
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registers an exec of `ctx`'s channel running `command`, decision still open.
pub fn register_exec(ctx: &super::channel::ChannelContext, command: &str) -> Option<LiveGuard> {
    ctx.gateway.sessions.register(LiveEntry {
        session_id: ctx.session_id.to_string(),
        identity: ctx.identity.identity.clone(),
        target: ctx.access.target.name.clone(),
        client: Some(ctx.peer),
        command: command.to_string(),
        started: Utc::now(),
        decision: "deciding".to_string(),
    })
}

impl LiveGuard {
    /// Records the decision so far (`allow`, `held`, `approved`).
    pub fn set_decision(&self, decision: &str) {
        if let Some(entry) = lock(&self.entries).map.get_mut(&self.key) {
            entry.decision = decision.to_string();
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        lock(&self.entries).map.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str) -> LiveEntry {
        LiveEntry {
            session_id: "00000000000000aa".into(),
            identity: "agent-7".into(),
            target: "demo".into(),
            client: None,
            command: command.into(),
            started: Utc::now(),
            decision: "deciding".into(),
        }
    }

    #[test]
    fn entries_live_as_long_as_their_guard() {
        let live = LiveSessions::new();
        let first = live.register(entry("ls")).unwrap();
        let second = live.register(entry("uptime")).unwrap();
        second.set_decision("held");
        let snap = live.snapshot(10);
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].command, "uptime", "newest first");
        assert_eq!(snap[0].decision, "held");
        assert_eq!(live.snapshot(1).len(), 1);
        drop(second);
        assert_eq!(live.snapshot(10)[0].command, "ls");
        drop(first);
        assert!(live.is_empty());
    }

    #[test]
    fn a_full_registry_refuses() {
        let live = LiveSessions::new();
        let guards: Vec<LiveGuard> = (0..MAX_LIVE_SESSIONS)
            .map(|_| live.register(entry("ls")).unwrap())
            .collect();
        assert!(live.register(entry("one more")).is_none());
        drop(guards);
        assert!(live.register(entry("room again")).is_some());
    }

    #[test]
    fn long_commands_are_cut_for_display() {
        let live = LiveSessions::new();
        let _guard = live.register(entry(&"x".repeat(10_000))).unwrap();
        let snap = live.snapshot(1);
        assert_eq!(snap[0].command.chars().count(), MAX_COMMAND_CHARS + 1);
    }
}
