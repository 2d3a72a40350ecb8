//! The SSH server agents connect to.
