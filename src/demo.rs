//! `gatehouse demo`.
