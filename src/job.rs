//! A job: the exact bytes a client posted, plus the metadata the queue keeps for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// A job's identity, unique within the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// One job. The body is kept as the posted bytes (already validated as JSON) so a
/// fetch returns exactly what was posted; cloning is cheap (reference-counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub body: Bytes,
    /// The `uniq` key given at creation; held by the queue while the job waits.
    pub uniq: Option<Arc<str>>,
}

/// Hands out job ids; shared by every queue so ids are unique across the server.
#[derive(Debug, Clone)]
pub struct JobIds(Arc<AtomicU64>);

impl JobIds {
    /// A generator whose first id is `next`.
    pub fn starting_at(next: u64) -> Self {
        JobIds(Arc::new(AtomicU64::new(next)))
    }

    /// A fresh id.
    pub fn next(&self) -> JobId {
        JobId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for JobIds {
    fn default() -> Self {
        JobIds::starting_at(1)
    }
}
