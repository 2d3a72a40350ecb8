//! Streaming redaction of secrets in target output.
