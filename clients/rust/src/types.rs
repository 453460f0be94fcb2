//! The typed answers of the server.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A job's id, as the server numbers them (`X-presque-jobid`).
///
/// ```
/// use presque_client::JobId;
/// let id: JobId = "17".parse().unwrap();
/// assert_eq!(id, JobId(17));
/// assert_eq!(id.to_string(), "17");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(JobId)
    }
}

/// `GET /j/NAME`: a queue's counters (zeros for an unknown queue).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue_name: String,
    /// Ready jobs (not delayed ones).
    pub job_count: u64,
    /// Failures reported.
    pub job_failed: u64,
    /// Jobs handed out.
    pub job_processed: u64,
}

/// One queue on `GET /overview`: all its counters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct QueueOverview {
    /// The queue.
    pub name: String,
    /// Fetches are allowed (see [`Client::close`](crate::Client::close)).
    pub open: bool,
    /// Jobs ready to be handed out.
    pub ready: u64,
    /// Jobs not due yet.
    pub delayed: u64,
    /// Jobs in flight under a lease.
    pub leased: u64,
    /// Dead letters.
    pub dead: u64,
    /// Fetches parked on the queue (long-polling workers).
    pub waiting: u64,
    /// Jobs handed out.
    pub processed: u64,
    /// Failures reported.
    pub failed: u64,
}

/// One failure report kept with a job.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FailureReport {
    /// When, in epoch seconds.
    pub at: f64,
    /// The worker that reported it, if known.
    pub worker_id: Option<String>,
    /// Why, if given.
    pub error: Option<String>,
}

/// `GET /q/NAME/ID`: where a job is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// `ready`, `delayed`, `leased` or `dead`.
    pub state: String,
    /// Deliveries that failed or ran out so far.
    pub attempts: u32,
    /// When its lease ends, if leased (epoch seconds).
    pub lease_deadline: Option<f64>,
    /// When it comes due, if delayed (epoch seconds).
    pub due_at: Option<f64>,
    /// The worker holding its lease, if any.
    pub worker_id: Option<String>,
    /// Its newest failure reports, oldest first.
    pub errors: Vec<FailureReport>,
    /// When it died, if dead.
    pub died_at: Option<f64>,
    /// Why it died (`failed`, `lease expired`), if dead.
    pub reason: Option<String>,
}

/// One dead letter on `GET /dead/NAME`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeadJob {
    /// The job.
    pub id: JobId,
    /// Deliveries that failed or ran out.
    pub attempts: u32,
    /// When it died (epoch seconds), if recorded.
    pub died_at: Option<f64>,
    /// `failed` or `lease expired`, if recorded.
    pub reason: Option<String>,
    /// Its newest failure reports, oldest first.
    pub errors: Vec<FailureReport>,
    /// The job itself, the bytes as posted.
    pub job: Box<RawValue>,
}
