//! What a queue answers when it refuses a message or cannot carry it out.

use crate::storage::StorageError;

/// Why a queue refused or could not answer a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("no job")]
    Empty,
    #[error("queue is closed")]
    Closed,
    #[error("job already exists")]
    Duplicate,
    #[error("job not found")]
    JobNotFound,
    /// The job is here, but not on the delivery the request named: its lease ran out
    /// (and another worker may hold it now).
    #[error("lease is no longer held")]
    LeaseNotHeld,
    #[error("too many requests are waiting on this queue (limit {0})")]
    TooManyWaiters(usize),
    /// The server is shutting down: a fetch that would wait is answered now, without a
    /// job.
    #[error("server is stopping")]
    Stopping,
    /// Creating the jobs would take the server's jobs past the memory budget.
    #[error("queue memory is full")]
    MemoryFull,
    /// Creating the jobs would take the queue past its `max_jobs`.
    #[error("queue is full (max_jobs {0})")]
    TooManyJobs(u64),
    /// The queue was deleted after its address was looked up; look it up again.
    #[error("queue was deleted")]
    Gone,
    /// The change could not be logged, so it was not made (or not acknowledged).
    #[error("storage failure: {0}")]
    Storage(String),
    /// The log cannot take changes now; nothing was changed.
    #[error("{message}")]
    Unavailable { message: String, retry: bool },
}

/// Keeps the log's "not now" apart from real failures: the HTTP layer answers the one
/// with 503 (and `Retry-After` when the log retries by itself), the other with 500.
impl From<StorageError> for QueueError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable { retry, .. } => QueueError::Unavailable {
                message: e.to_string(),
                retry,
            },
            e => QueueError::Storage(e.to_string()),
        }
    }
}

/// The answer of a queue message.
pub type QueueResult<T> = Result<T, QueueError>;
