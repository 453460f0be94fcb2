//! Persistence: an append-only log of every accepted change ([`log`]), periodic
//! snapshots of every queue and the registry ([`snapshot`] for the files,
//! [`snapshotter`] for the actor that takes them), and start-up recovery from both
//! ([`recovery`], telling its [`progress`]). File layouts are in [`format`](mod@format).

pub mod format;
pub(crate) mod log;
pub(crate) mod progress;
pub(crate) mod recovery;
pub(crate) mod snapshot;
pub(crate) mod snapshotter;
mod watch;

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
    /// The log cannot make changes durable now, so the change was refused before it
    /// was logged or applied. `retry`: the writer keeps trying and will take changes
    /// again by itself once the disk does (a full disk freed); otherwise (the data
    /// directory or its lock removed) only a restart helps.
    #[error("changes cannot be made durable: {reason}")]
    Unavailable { reason: String, retry: bool },
    /// At shutdown: log records the writer never managed to write. Under `everysec`
    /// and `no` they may have been acknowledged.
    #[error("{bytes} bytes of log records were never written: {reason}")]
    Unwritten { bytes: u64, reason: String },
    /// A queue or the worker registry could not be imaged (its actor is gone), so
    /// the snapshot was abandoned: one without it would make recovery forget it.
    #[error("snapshot abandoned: {0}")]
    ImageUnavailable(String),
    /// The blocking task writing a snapshot panicked or was cancelled.
    #[error("snapshot writer failed: {0}")]
    SnapshotWriterFailed(String),
    #[error("cannot encode a snapshot: {0}")]
    EncodeSnapshot(String),
    #[error("cannot encode a record: {0}")]
    EncodeRecord(String),
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
