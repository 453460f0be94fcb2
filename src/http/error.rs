//! Every error a request can meet, and the one place each becomes an HTTP response:
//! `{"error": MESSAGE}` with the protocol's status code.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::names::NameError;
use crate::queue::QueueError;

/// `Retry-After` (seconds) of a long-poll answered 503 because the server is stopping.
pub const STOPPING_RETRY_AFTER: &str = "1";

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("queue name is missing")]
    QueueNameMissing,
    #[error("invalid queue name: {0}")]
    BadQueueName(NameError),
    #[error("content-type must be set to application/json")]
    ContentType,
    /// A body in a Content-Encoding the server does not decode (only `identity` is).
    #[error("content-encoding {0:?} is not supported: send the body uncompressed (no Content-Encoding, or identity)")]
    UnsupportedEncoding(String),
    #[error("job is missing")]
    JobMissing,
    #[error("content is missing")]
    ContentMissing,
    #[error("invalid JSON: {0}")]
    BadJson(String),
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("no job")]
    NoJob,
    #[error("queue is closed")]
    QueueClosed,
    #[error("job already exists")]
    Duplicate,
    #[error("jobs should be an array of job")]
    JobsNotArray,
    #[error("{0} is not supported in batch mode")]
    NotInBatchMode(&'static str),
    #[error("status must be \"start\" or \"stop\", not {0}")]
    BadStatus(String),
    #[error("worker_id is missing")]
    WorkerIdMissing,
    #[error("invalid worker_id: {0}")]
    BadWorkerId(NameError),
    #[error("invalid uniq: must not contain control characters")]
    BadUniq,
    #[error("worker not found")]
    WorkerNotFound,
    #[error("schedule not found")]
    ScheduleNotFound,
    /// The path names something no route can have (not UTF-8, not a job id).
    #[error("{0}")]
    BadPath(String),
    /// A header the route reads is malformed.
    #[error("{0}")]
    BadHeader(String),
    /// The query string, or one of its parameters, is malformed or out of range.
    #[error("{0}")]
    BadQuery(String),
    /// A query parameter the route does not take (nor one of the tolerated originals).
    #[error("{}", unknown_query_message(.unknown, .accepted))]
    UnknownQuery {
        unknown: Vec<String>,
        accepted: &'static [&'static str],
    },
    #[error("give delayed (epoch seconds) or delay (seconds from now), not both")]
    DelayConflict,
    /// The body is valid JSON but not what the route takes.
    #[error("{0}")]
    BadBody(String),
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("not found")]
    NotFound,
    #[error("the queue is being deleted by concurrent requests; retry")]
    QueueBusy,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("storage failure: {0}")]
    Storage(String),
    /// Writes are refused while the log cannot make them durable; reads still work.
    #[error("{message}")]
    StorageUnavailable { message: String, retry: bool },
    #[error("job not found")]
    JobNotFound,
    /// The job is here, but the request's lease token is not its current lease.
    #[error("lease is no longer held")]
    LeaseNotHeld,
    #[error("the lease token is missing: send the {header} header that came with the lease (or ?delivery=TOKEN)")]
    LeaseTokenMissing { header: &'static str },
    /// The lease token is not one the server hands out, or names another job.
    #[error("{0}")]
    BadLeaseToken(String),
    #[error("too many requests are waiting on this queue (limit {0})")]
    TooManyWaiters(usize),
    /// A long-poll cut short, or refused, by a graceful shutdown: retry (elsewhere, or
    /// once the server is back).
    #[error("server is stopping")]
    Stopping,
    /// The body did not arrive within `[server] body_timeout_secs`.
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    /// Auth is on and the request carries no `Authorization` header.
    #[error("authentication required: send Authorization: Bearer TOKEN")]
    AuthRequired,
    /// The `Authorization` header is not `Bearer TOKEN` with a token the server knows.
    #[error("invalid bearer token")]
    BadToken,
    /// A valid token whose role may not use the route.
    #[error("forbidden: this route needs a token with the {needs} role")]
    Forbidden { needs: &'static str },
    /// The jobs would take the server past its memory budget (`max_memory_bytes`).
    #[error("queue memory is full")]
    MemoryFull,
    /// The jobs would take the queue past its `max_jobs`.
    #[error("queue is full (max_jobs {0})")]
    QueueFull(u64),
    /// A request that came while recovery still runs (the health routes aside).
    #[error("server is recovering")]
    Recovering,
}

/// `unknown query parameter "x"; this route takes: a, b` (or `... takes no query
/// parameters`).
fn unknown_query_message(unknown: &[String], accepted: &[&str]) -> String {
    let names: Vec<String> = unknown.iter().map(|name| format!("{name:?}")).collect();
    let plural = if unknown.len() == 1 { "" } else { "s" };
    let takes = if accepted.is_empty() {
        "this route takes no query parameters".to_owned()
    } else {
        format!("this route takes: {}", accepted.join(", "))
    };
    format!(
        "unknown query parameter{plural} {}; {takes}",
        names.join(", ")
    )
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Empty => ApiError::NoJob,
            QueueError::Closed => ApiError::QueueClosed,
            QueueError::Duplicate => ApiError::Duplicate,
            QueueError::Gone => ApiError::QueueBusy,
            QueueError::Storage(message) => ApiError::Storage(message),
            QueueError::Unavailable { message, retry } => {
                ApiError::StorageUnavailable { message, retry }
            }
            QueueError::JobNotFound => ApiError::JobNotFound,
            QueueError::LeaseNotHeld => ApiError::LeaseNotHeld,
            QueueError::TooManyWaiters(limit) => ApiError::TooManyWaiters(limit),
            QueueError::Stopping => ApiError::Stopping,
            QueueError::MemoryFull => ApiError::MemoryFull,
            QueueError::TooManyJobs(max) => ApiError::QueueFull(max),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        QueueError::from(e).into()
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Internal(format!("actor unavailable: {e}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::QueueNameMissing
            | ApiError::NoJob
            | ApiError::QueueClosed
            | ApiError::WorkerNotFound
            | ApiError::ScheduleNotFound
            | ApiError::JobNotFound
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::LeaseNotHeld => StatusCode::CONFLICT,
            ApiError::AuthRequired | ApiError::BadToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyWaiters(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::QueueBusy
            | ApiError::StorageUnavailable { .. }
            | ApiError::Stopping
            | ApiError::Recovering => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MemoryFull | ApiError::QueueFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        if let ApiError::StorageUnavailable { retry: true, .. } = self {
            // The log writer retries by itself; a second is about its retry pace.
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::Recovering = self {
            // Recovery of even millions of jobs takes seconds: ask again soon.
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::Stopping = self {
            // A restart (or another instance behind the same address) takes about that.
            response.insert_header((header::RETRY_AFTER, STOPPING_RETRY_AFTER));
        }
        if let ApiError::BodyTimeout { .. } = self {
            // The rest of the body may never come: the connection cannot be reused.
            response.force_close();
        }
        match self {
            ApiError::AuthRequired => {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="presque""#));
            }
            ApiError::BadToken => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="presque", error="invalid_token""#,
                ));
            }
            _ => {}
        }
        if let ApiError::Internal(_) | ApiError::Storage(_) = self {
            tracing::error!(error = %self, "request failed");
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}
