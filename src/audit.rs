//! Hash-chained audit log.
