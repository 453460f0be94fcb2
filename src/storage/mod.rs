//! Persistence: an append-only log of every accepted change ([`log`]), periodic
//! snapshots of every queue and the registry ([`snapshot`]), and start-up recovery
//! from both ([`recovery`]). File layouts are in [`format`](mod@format).

pub mod format;
pub mod log;
pub mod recovery;
pub mod snapshot;

use std::path::PathBuf;

/// Why persistence failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("{action} {path}: {message}")]
    Io {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the log writer has stopped after an earlier failure: {0}")]
    LogFailed(String),
    #[error("cannot encode a record: {0}")]
    Encode(String),
}

impl StorageError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, e: std::io::Error) -> Self {
        StorageError::Io {
            action,
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Opens a directory and fsyncs it, so a rename or create inside it is durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("cannot sync directory", dir, e))
}
