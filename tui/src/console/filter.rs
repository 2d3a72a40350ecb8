//! The sessions/recordings filter: space-separated terms, each `field:value` or a bare word.
//!
//! Fields: `identity:` (or `who:`), `target:`, `date:` (a prefix of the start time, e.g.
//! `2025-06-01` or `2025-06`), `decision:` (`allow`, `deny`, `held`, `approved`, `denied`, ...).
//! A bare word matches any field. All terms must match; matching ignores case. The same filter
//! applies to live sessions (their start time and the decision so far) and to recordings.

use crate::model::{LiveSession, RecordingItem};

/// Which field a term looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Identity,
    Target,
    Date,
    Decision,
    Any,
}

/// One term, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    /// The field named before `:`; a bare word looks at every field.
    field: Field,
    /// What the field must contain (or, for dates, start with), lowercased once here.
    value: String,
}

/// A parsed filter; the default matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    /// The text as typed, to show and to edit again.
    text: String,
    /// The parsed terms; every one must match. Empty terms (`target:`) are dropped.
    terms: Vec<Term>,
}

impl RecordingFilter {
    pub fn parse(text: &str) -> RecordingFilter {
        let terms = text
            .split_whitespace()
            .map(|word| {
                let (field, value) = match word.split_once(':') {
                    Some(("identity" | "who" | "id", v)) => (Field::Identity, v),
                    Some(("target" | "host", v)) => (Field::Target, v),
                    Some(("date" | "day", v)) => (Field::Date, v),
                    Some(("decision", v)) => (Field::Decision, v),
                    _ => (Field::Any, word),
                };
                Term {
                    field,
                    value: value.to_lowercase(),
                }
            })
            .filter(|t| !t.value.is_empty())
            .collect();
        RecordingFilter {
            text: text.to_string(),
            terms,
        }
    }

    /// The text as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the filter filters anything.
    pub fn is_active(&self) -> bool {
        !self.terms.is_empty()
    }

    pub fn matches_recording(&self, r: &RecordingItem) -> bool {
        self.terms.iter().all(|t| {
            let has = |s: &str| s.to_lowercase().contains(&t.value);
            match t.field {
                Field::Identity => has(&r.identity),
                Field::Target => has(&r.target),
                Field::Date => r.started.to_lowercase().starts_with(&t.value),
                Field::Decision => has(&r.decision),
                Field::Any => {
                    has(&r.identity)
                        || has(&r.target)
                        || has(&r.started)
                        || has(&r.decision)
                        || has(&r.path.display().to_string())
                }
            }
        })
    }

    pub fn matches_session(&self, s: &LiveSession) -> bool {
        self.terms.iter().all(|t| {
            let has = |v: &str| v.to_lowercase().contains(&t.value);
            match t.field {
                Field::Identity => has(&s.identity),
                Field::Target => has(&s.target),
                Field::Date => s.started.to_lowercase().starts_with(&t.value),
                Field::Decision => has(&s.decision),
                Field::Any => {
                    has(&s.identity)
                        || has(&s.target)
                        || has(&s.command)
                        || has(&s.session_id)
                        || has(&s.started)
                        || has(&s.decision)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> LiveSession {
        LiveSession {
            session_id: "00ab".into(),
            identity: "agent-7".into(),
            target: "web-1".into(),
            client: "127.0.0.1:4000".into(),
            command: "python3 -c 'print(1)'".into(),
            age_secs: 3,
            started: "2025-06-01 10:00:00".into(),
            decision: "held".into(),
        }
    }

    #[test]
    fn date_and_decision_filter_live_sessions() {
        let s = session();
        assert!(RecordingFilter::parse("date:2025-06").matches_session(&s));
        assert!(!RecordingFilter::parse("date:2025-07").matches_session(&s));
        assert!(RecordingFilter::parse("decision:HELD who:agent").matches_session(&s));
        assert!(!RecordingFilter::parse("decision:approved").matches_session(&s));
        // A bare word looks at every field, the decision too.
        assert!(RecordingFilter::parse("held").matches_session(&s));
        assert!(RecordingFilter::parse("print").matches_session(&s));
        assert!(!RecordingFilter::parse("target:db").matches_session(&s));
    }

    #[test]
    fn empty_terms_filter_nothing() {
        let f = RecordingFilter::parse("target: date:");
        assert!(!f.is_active());
        assert!(f.matches_session(&session()));
        assert_eq!(f.text(), "target: date:");
    }
}
