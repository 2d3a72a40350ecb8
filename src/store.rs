//! The embedded store (sled under `DATA/store`). All persistent state goes through here so that
//! another backend can replace it.

use std::path::Path;

/// Runs blocking disk work (store writes, which flush to disk; audit appends) from async code
/// on this thread without stalling the other tasks of its worker: on a multi-threaded runtime
/// they move to another thread while it runs (`block_in_place`). With one worker per two CPUs,
/// an fsync on a worker would otherwise hold up every session's bytes for its duration.
/// Outside a multi-threaded runtime (unit tests) it simply runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

impl Store {
    /// Opens (creating) the store under `data_dir/store`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("store");
        let db = sled::open(&path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Store { db })
    }
    /// The named tree (vault, approvals, grants, audit...).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }
}
