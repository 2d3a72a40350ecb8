//! Rate limits and counters for the issuance endpoint.
//!
//! Fixed one-minute windows per key (source address, identity), in a map bounded by
//! [`MAX_TRACKED`]: when it is full, expired windows are dropped, and if none are, new keys are
//! refused (fail closed) rather than letting the map grow.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked by one limiter.
pub const MAX_TRACKED: usize = 100_000;

/// The window every limit counts in.
const WINDOW: Duration = Duration::from_secs(60);

/// At most `limit` events per key per minute.
#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Events allowed per window.
    limit: u32,
    /// Window start and count per key.
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `limit` events per minute per key.
    pub fn new(limit: u32) -> Self {
        RateLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; `Err(retry_after)` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return Err(WINDOW);
        };
        if windows.len() >= MAX_TRACKED && !windows.contains_key(key) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return Err(WINDOW);
            }
        }
        let entry = windows.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(WINDOW.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Why a request was refused, as counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Bad JSON, bad public key, missing Authorization.
    Malformed,
    /// Body over the limit.
    TooLarge,
    /// Token did not verify.
    Token,
    /// Token already spent.
    Replay,
    /// Proof of possession missing or wrong.
    Proof,
    /// Identity or groups not acceptable.
    Policy,
    /// Too many requests.
    RateLimited,
    /// Issuer keys unreachable.
    Unavailable,
    /// Our own failure (store, audit, signing).
    Internal,
}

impl Refusal {
    /// Every reason, in the order `/metrics` prints them.
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::Token,
        Refusal::Replay,
        Refusal::Proof,
        Refusal::Policy,
        Refusal::RateLimited,
        Refusal::Unavailable,
        Refusal::Internal,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::Token => "token",
            Refusal::Replay => "replay",
            Refusal::Proof => "proof",
            Refusal::Policy => "policy",
            Refusal::RateLimited => "rate_limited",
            Refusal::Unavailable => "unavailable",
            Refusal::Internal => "internal",
        }
    }
}

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Certificates handed out.
    issued: AtomicU64,
    /// Refusals, indexed like [`Refusal::ALL`].
    refused: [AtomicU64; 9],
}

impl Metrics {
    /// Counts one certificate.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refusal.
    pub fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            if let Some(counter) = self.refused.get(i) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Certificates issued so far.
    pub fn issued_count(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "gatehouse_certificates_issued_total",
            "SSH certificates issued over HTTP.",
            self.issued_count(),
        );
        let _ = writeln!(out, "# HELP gatehouse_certificate_requests_refused_total Certificate requests refused, by reason.");
        let _ = writeln!(
            out,
            "# TYPE gatehouse_certificate_requests_refused_total counter"
        );
        for (why, counter) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "gatehouse_certificate_requests_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        // Process-wide, not the endpoint's: /metrics is where an operator looks.
        counter(
            &mut out,
            "gatehouse_log_lines_dropped_total",
            "Log lines dropped because stderr was not read fast enough.",
            crate::logging::dropped_lines() as u64,
        );
        out
    }
}

/// Appends an unlabelled counter with its help and type lines.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_key() {
        let l = RateLimiter::new(2);
        assert!(l.check(&"a").is_ok());
        assert!(l.check(&"a").is_ok());
        assert!(l.check(&"a").is_err());
        assert!(l.check(&"b").is_ok());
    }

    #[test]
    fn metrics_render() {
        let m = Metrics::default();
        m.issued();
        m.refused(Refusal::Replay);
        let text = m.render();
        assert!(text.contains("gatehouse_certificates_issued_total 1\n"));
        assert!(
            text.contains("gatehouse_certificate_requests_refused_total{reason=\"replay\"} 1\n")
        );
        assert!(text.contains("{reason=\"token\"} 0\n"));
    }
}
