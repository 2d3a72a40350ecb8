//! SSH client to targets: vaulted keys, pinned host keys, pooled connections.
