//! Failed-authentication counting per source address.
//!
//! A source that fails more than the configured number of times within a minute is refused
//! outright (its offers are rejected before any signature work) until the minute has passed.
//! The table is bounded: when full, the oldest entries are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Source addresses tracked at once; beyond this the stalest entries are forgotten.
pub const MAX_TRACKED_SOURCES: usize = 65_536;
/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Failure counts per source address within the current window.
pub struct AuthFailures {
    /// Failures allowed per window before the source is refused.
    limit: u32,
    /// Window start and count per source.
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthFailures {
    /// A counter refusing sources after `limit` failures per minute.
    pub fn new(limit: u32) -> AuthFailures {
        AuthFailures {
            limit,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this source is currently refused.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let Ok(table) = self.table.lock() else {
            return true;
        };
        matches!(table.get(&ip), Some((start, n)) if start.elapsed() < WINDOW && *n >= self.limit)
    }

    /// Counts one failure; returns the failures in the current window.
    pub fn record(&self, ip: IpAddr) -> u32 {
        let Ok(mut table) = self.table.lock() else {
            return u32::MAX;
        };
        if table.len() >= MAX_TRACKED_SOURCES && !table.contains_key(&ip) {
            table.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if table.len() >= MAX_TRACKED_SOURCES {
                if let Some(oldest) = table.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_and_only_that_source() {
        let f = AuthFailures::new(3);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert!(!f.is_blocked(a));
            f.record(a);
        }
        assert!(f.is_blocked(a));
        assert!(!f.is_blocked(b));
    }
}
