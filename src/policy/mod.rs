//! The command policy engine: shell command line in, Allow / Deny / Hold out. Pure: no SSH, no I/O
//! on the decision path.
//!
//! (Contract other modules rely on; the engine behind it is built out in this module.)

use std::path::Path;

/// What happens to a command line. Ordered by severity: a line's decision is the most severe of
/// its commands' (`Deny` > `Hold` > `Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Hold,
    Deny,
}

/// The decision on one command line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// Allow, hold or deny.
    pub decision: Action,
    /// Id of the rule (or built-in fail-closed reason id) that decided.
    pub rule: String,
    /// Text shown to the agent.
    pub reason: String,
    /// Every simple command found, normalized, argv quoted with shlex for display.
    pub commands: Vec<String>,
    /// Reviewer group for holds (approvals issue).
    pub reviewers: Option<String>,
    /// Distinct approvals required for holds.
    pub approvals_required: u32,
}

/// Errors loading a policy file (file:line and the key).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
}

/// One named policy (rules + default action).
#[derive(Debug, Clone)]
pub struct Policy {}

/// All policies of a policy file.
#[derive(Debug, Clone)]
pub struct PolicySet {}

impl PolicySet {
    /// The compiled-in default ruleset (config/policy.toml).
    pub fn builtin() -> PolicySet {
        PolicySet {}
    }
    /// Loads a policy file.
    pub fn load(_path: &Path) -> Result<PolicySet, PolicyError> {
        Ok(PolicySet {})
    }
    /// The policy with this name.
    pub fn policy(&self, _name: &str) -> Option<&Policy> {
        None
    }
}

/// Decides one command line (bytes: non-UTF-8 lines are held, never a panic).
pub fn decide(_policy: &Policy, _line: &[u8]) -> Decision {
    Decision {
        decision: Action::Hold,
        rule: "not-implemented".into(),
        reason: "policy engine not built yet".into(),
        commands: vec![],
        reviewers: None,
        approvals_required: 1,
    }
}
