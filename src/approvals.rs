//! Held commands and their approvals.
