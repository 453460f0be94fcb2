//! The JSON bodies the routes take and answer, as OpenAPI schemas. Most handlers build
//! their answers with `json!` (and some embed stored job bytes verbatim), so these
//! types only describe them; `tests/api/openapi.rs` checks real answers against them
//! key for key.

// Read by utoipa's derive only.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

// Times are epoch seconds, with fractions (milliseconds).

/// `/j/NAME`: a queue's counters (zeros for an unknown queue).
#[derive(ToSchema)]
pub struct Counters {
    pub queue_name: String,
    /// Ready jobs (not delayed ones).
    pub job_count: u64,
    pub job_failed: u64,
    pub job_processed: u64,
}

/// `/status/`: the queue names, sorted, a page at a time.
#[derive(ToSchema)]
pub struct QueueList {
    pub queues: Vec<String>,
    /// The number of all queues.
    pub size: u64,
    /// The `after` of the next page (null on the last); present only when `limit` or
    /// `after` was given or when there is more than one page.
    pub next: Option<String>,
}

/// `/status/NAME`: ready jobs, and with `with_desc=1` a page of them as JSON text.
#[derive(ToSchema)]
pub struct QueueStatus {
    pub queue: String,
    /// The number of all ready jobs.
    pub size: u64,
    /// With `with_desc=1`: each job as JSON text, in fetch order (the most urgent
    /// first, FIFO among equals).
    pub jobs: Option<Vec<String>>,
    /// With `with_desc=1`, when some listed job has a priority other than the
    /// default 128: each listed job's priority, in the order of `jobs`.
    pub priorities: Option<Vec<u8>>,
    /// With `with_desc=1`: the `after` of the next page (a job id; null on the last);
    /// present only when `limit` or `after` was given or the page is not the whole
    /// queue.
    pub next: Option<u64>,
}

/// `POST /qb/NAME`: jobs created in order.
#[derive(ToSchema)]
#[schema(example = json!({"jobs": [{"n": 1}, {"n": 2}]}))]
pub struct Batch {
    /// Each job, any JSON value.
    pub jobs: Vec<Value>,
}

/// `GET /control/NAME`.
#[derive(ToSchema)]
pub struct ControlStatus {
    pub queue: String,
    /// 1: open, 0: closed (fetches answer 404 `queue is closed`).
    pub status: u8,
}

/// Open (`start`) or close (`stop`) a queue for fetching.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ControlAction {
    Start,
    Stop,
}

/// `POST /control/NAME`.
#[derive(ToSchema)]
#[schema(example = json!({"status": "stop"}))]
pub struct ControlChange {
    pub status: ControlAction,
}

/// `POST /control/NAME`'s answer.
#[derive(ToSchema)]
pub struct ControlUpdated {
    pub queue: String,
    /// Always `updated`.
    pub response: String,
}

/// `POST /w/NAME` without the `X-presque-workerid` header: the id in the body.
#[derive(ToSchema)]
#[schema(example = json!({"worker_id": "worker-1"}))]
pub struct WorkerRegistration {
    /// 1 to 255 bytes of printable ASCII without `/` (a number is taken as its text).
    #[schema(value_type = String)]
    pub worker_id: Value,
}

/// `GET /w/?worker_id=ID`.
#[derive(Serialize, ToSchema)]
pub struct WorkerStats {
    pub worker_id: String,
    /// Epoch seconds of the (last) registration.
    pub started_at: u64,
    pub processed: u64,
    pub failed: u64,
}

/// `GET /w/?queue_name=NAME`.
#[derive(Serialize, ToSchema)]
pub struct QueueWorkers {
    pub queue_name: String,
    pub workers_list: Vec<String>,
    pub processed: u64,
    pub failed: u64,
}

/// `GET /w/` (every registered worker's id), or one of the two objects.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum WorkersAnswer {
    All(Vec<String>),
    Worker(WorkerStats),
    Queue(QueueWorkers),
}

/// A job on lease to a worker.
#[derive(ToSchema)]
pub struct HeldLease {
    pub queue: String,
    pub id: u64,
    pub lease_deadline: f64,
}

/// Whether a worker was seen within `worker_timeout_secs`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Liveness {
    Active,
    Gone,
}

/// One worker on `/workers`.
#[derive(ToSchema)]
pub struct WorkerLiveness {
    pub worker_id: String,
    pub registered: bool,
    pub queues: Vec<String>,
    #[schema(required = true)]
    pub started_at: Option<u64>,
    pub processed: u64,
    pub failed: u64,
    #[schema(required = true)]
    pub last_seen: Option<f64>,
    pub state: Liveness,
    pub jobs: Vec<HeldLease>,
}

/// `/workers`: a page of workers, by id.
#[derive(ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerLiveness>,
    /// The `after` of the next page (null on the last).
    #[schema(required = true)]
    pub next: Option<String>,
}

/// Where a job is.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum JobState {
    Ready,
    Delayed,
    Leased,
    Dead,
}

/// Why a job died.
#[derive(ToSchema)]
pub enum DeathReason {
    #[schema(rename = "failed")]
    Failed,
    #[schema(rename = "lease expired")]
    LeaseExpired,
    /// Its ttl ran out before it was handed out.
    #[schema(rename = "expired")]
    Expired,
}

/// One failure report kept with a job (its newest 5, oldest first).
#[derive(ToSchema)]
pub struct FailureReport {
    pub at: f64,
    #[schema(required = true)]
    pub worker_id: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// `PUT /q/NAME/ID`'s body (or an empty body): why the job failed. `{}` and
/// `"error": null` mean no reason; a reason is cut to 1,000 characters.
#[derive(ToSchema)]
#[schema(example = json!({"error": "smtp timeout"}))]
pub struct FailureBody {
    pub error: Option<String>,
}

/// A job's whereabouts (`/q/NAME/ID`).
#[derive(ToSchema)]
pub struct JobView {
    pub id: u64,
    pub queue: String,
    pub state: JobState,
    pub attempts: u32,
    /// 0 (the most urgent) to 255 (the least); 128 unless the job was created with one.
    #[schema(example = 128)]
    pub priority: u8,
    #[schema(required = true)]
    pub lease_deadline: Option<f64>,
    #[schema(required = true)]
    pub due_at: Option<f64>,
    /// The lease holder, when the lease came with `X-presque-workerid`.
    #[schema(required = true)]
    pub worker_id: Option<String>,
    pub errors: Vec<FailureReport>,
    #[schema(required = true)]
    pub died_at: Option<f64>,
    #[schema(required = true)]
    pub reason: Option<DeathReason>,
    /// When the job leaves the queue unless handed out first (its `ttl`); null once
    /// handed out, or without a ttl.
    #[schema(required = true)]
    pub expires_at: Option<f64>,
    /// With `?body=1`: the job, the bytes as posted.
    pub job: Option<Value>,
}

/// One dead letter.
#[derive(ToSchema)]
pub struct DeadLetter {
    pub id: u64,
    pub attempts: u32,
    #[schema(required = true)]
    pub died_at: Option<f64>,
    #[schema(required = true)]
    pub reason: Option<DeathReason>,
    pub errors: Vec<FailureReport>,
    /// The job, the bytes as posted.
    pub job: Value,
}

/// `GET /dead/NAME`: a page of dead letters, oldest id first.
#[derive(ToSchema)]
pub struct DeadList {
    pub queue: String,
    pub jobs: Vec<DeadLetter>,
    /// The `after` of the next page (null on the last).
    #[schema(required = true)]
    pub next: Option<u64>,
}

/// `POST /dead/NAME`'s answer.
#[derive(ToSchema)]
pub struct DeadRetried {
    pub queue: String,
    pub retried: u64,
}

/// `DELETE /dead/NAME`'s answer.
#[derive(ToSchema)]
pub struct DeadPurged {
    pub queue: String,
    pub purged: u64,
}

/// `/settings/NAME`.
#[derive(ToSchema)]
pub struct QueueSettings {
    pub queue: String,
    pub max_attempts: u32,
    pub max_attempts_is_default: bool,
    /// Null: unlimited.
    #[schema(required = true)]
    pub max_jobs: Option<u64>,
    pub max_jobs_is_default: bool,
    pub backoff: BackoffPolicy,
    pub backoff_is_default: bool,
    pub on_expiry: OnExpiry,
}

/// A retry backoff: how long a leased job that failed (with no `delay`/`delayed` of
/// its own) or whose lease ran out waits before it is ready again. `none`: at once;
/// `fixed`: `delay_secs`; `exponential`: `base_secs × factor^(attempts − 1)`, at
/// most `max_secs`, less a random part of up to `jitter` of it. Seconds are above 0
/// and at most 315360000.
#[derive(ToSchema)]
#[schema(example = json!({"kind": "exponential", "base_secs": 1, "factor": 2, "max_secs": 300, "jitter": 0.2}))]
pub struct BackoffPolicy {
    pub kind: BackoffKind,
    /// `fixed` only.
    #[schema(exclusive_minimum = 0, maximum = 315360000)]
    pub delay_secs: Option<f64>,
    /// `exponential` only: the first delay.
    #[schema(exclusive_minimum = 0, maximum = 315360000)]
    pub base_secs: Option<f64>,
    /// `exponential` only: 1 to 100, default 2.
    #[schema(minimum = 1, maximum = 100)]
    pub factor: Option<f64>,
    /// `exponential` only (required there): the longest delay, at least `base_secs`.
    #[schema(exclusive_minimum = 0, maximum = 315360000)]
    pub max_secs: Option<f64>,
    /// `exponential` only: 0 to 1, default 0.
    #[schema(minimum = 0, maximum = 1)]
    pub jitter: Option<f64>,
}

/// A backoff's kind.
#[derive(ToSchema)]
pub enum BackoffKind {
    #[schema(rename = "none")]
    None,
    #[schema(rename = "fixed")]
    Fixed,
    #[schema(rename = "exponential")]
    Exponential,
}

/// What becomes of a job whose ttl runs out before it is handed out: `dead` (the
/// default: a dead letter, reason `expired`) or `drop`.
#[derive(ToSchema)]
pub enum OnExpiry {
    #[schema(rename = "dead")]
    Dead,
    #[schema(rename = "drop")]
    Drop,
}

/// `POST /settings/NAME`: any of the keys (at least one); null follows the server's
/// default. All are checked before any is set.
#[derive(ToSchema)]
#[schema(example = json!({"max_attempts": 3, "max_jobs": 10000, "backoff": {"kind": "exponential", "base_secs": 1, "max_secs": 300, "jitter": 0.2}, "on_expiry": "dead"}))]
pub struct QueueSettingsChange {
    /// 1 to 1000, or null.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// 1 or more, or null.
    #[schema(minimum = 1)]
    pub max_jobs: Option<u64>,
    /// A policy, or null.
    pub backoff: Option<BackoffPolicy>,
    pub on_expiry: Option<OnExpiry>,
}

/// `/health/live`.
#[derive(ToSchema)]
pub struct Live {
    /// Always `live`.
    pub status: String,
    pub version: String,
}

/// `/health/ready`.
#[derive(ToSchema)]
pub struct Ready {
    /// `ready` or `not ready`.
    pub status: String,
    /// Why not ready.
    pub reason: Option<String>,
}

/// One queue in `GET /overview`.
#[derive(ToSchema)]
pub struct QueueSummary {
    pub name: String,
    pub open: bool,
    pub ready: u64,
    pub delayed: u64,
    pub leased: u64,
    pub dead: u64,
    /// Consumers parked on a long-poll fetch.
    pub waiting: u64,
    pub processed: u64,
    pub failed: u64,
}

/// `GET /overview`: a page of queues in natural order.
#[derive(ToSchema)]
pub struct Overview {
    pub queues: Vec<QueueSummary>,
    /// The number of all queues.
    pub size: u64,
    /// The number of queues the filter matched.
    pub matched: u64,
    /// The `after` of the next page (null on the last).
    #[schema(required = true)]
    pub next: Option<String>,
}

/// One job in `GET /jobs/NAME`.
#[derive(ToSchema)]
pub struct JobEntry {
    pub id: u64,
    pub attempts: u32,
    /// 0 (the most urgent) to 255 (the least); 128 unless the job was created with one.
    #[schema(example = 128)]
    pub priority: u8,
    /// Delayed jobs: when the job comes due.
    #[schema(required = true)]
    pub due_at: Option<f64>,
    /// Leased jobs: when the lease expires.
    #[schema(required = true)]
    pub lease_deadline: Option<f64>,
    /// Leased jobs: the worker holding the lease, if it named itself.
    #[schema(required = true)]
    pub worker_id: Option<String>,
    pub errors: Vec<FailureReport>,
    /// Dead jobs: when the job died.
    #[schema(required = true)]
    pub died_at: Option<f64>,
    /// Dead jobs: why.
    #[schema(required = true)]
    pub reason: Option<DeathReason>,
    /// Ready and delayed jobs with a `ttl`: when they leave unless handed out first.
    #[schema(required = true)]
    pub expires_at: Option<f64>,
    /// The job, the bytes as posted.
    pub job: Value,
}

/// `GET /jobs/NAME`: a page of a queue's jobs in one state.
#[derive(ToSchema)]
pub struct JobList {
    pub queue: String,
    /// `ready`, `delayed`, `leased` or `dead`.
    pub state: String,
    /// The number of the queue's jobs in this state.
    pub size: u64,
    pub jobs: Vec<JobEntry>,
    /// The `after` of the next page (null on the last).
    #[schema(required = true)]
    pub next: Option<u64>,
}

/// `GET /info`'s memory figures.
#[derive(ToSchema)]
pub struct MemoryInfo {
    /// What the queues' jobs are counted to take.
    pub used_bytes: u64,
    /// `[limits] max_memory_bytes`; null when unlimited.
    #[schema(required = true)]
    pub limit_bytes: Option<u64>,
}

/// `GET /info`'s newest snapshot file.
#[derive(ToSchema)]
pub struct SnapshotInfo {
    pub generation: u64,
    #[schema(required = true)]
    pub bytes: Option<u64>,
    /// When it was written (the file's modification time).
    #[schema(required = true)]
    pub written_at: Option<f64>,
}

/// `GET /info`: facts about this server.
#[derive(ToSchema)]
pub struct ServerInfo {
    pub version: String,
    pub started_at: f64,
    pub uptime_secs: u64,
    /// The fsync policy as `config.toml` spells it.
    pub fsync: String,
    pub data_dir: String,
    pub memory: MemoryInfo,
    /// Null until the first snapshot is written.
    #[schema(required = true)]
    pub snapshot: Option<SnapshotInfo>,
    /// The number of queues.
    pub queues: u64,
    /// The id the next job will get.
    pub next_job_id: u64,
}

/// A schedule's job options, each only when set.
#[derive(ToSchema)]
pub struct ScheduleOptions {
    /// 0 (most urgent) to 255.
    #[schema(minimum = 0, maximum = 255)]
    pub priority: Option<u8>,
    /// Seconds the job may wait before it expires, 1 to 315360000.
    #[schema(minimum = 1, maximum = 315360000)]
    pub ttl: Option<u64>,
}

/// `POST /schedules/NAME`: unknown keys are refused.
#[derive(ToSchema)]
#[schema(example = json!({"cron": "0 */5 * * * *", "timezone": "Europe/Paris", "queue": "emails", "job": {"to": "a@b.c"}}))]
pub struct ScheduleChange {
    /// 5 fields (minute first), or 6 with seconds first; `@daily` and friends;
    /// `L`, `W` and `#` as in croner.
    pub cron: String,
    /// An IANA time zone; UTC when absent.
    pub timezone: Option<String>,
    /// The queue each run posts to (created by its first job).
    pub queue: String,
    /// The job each run posts: any JSON value.
    pub job: Value,
    pub options: Option<ScheduleOptions>,
}

/// Slots that passed (the server down, or busy) without a run of their own: the
/// run at `last_run` stood in for them.
#[derive(ToSchema)]
pub struct ScheduleMissed {
    /// How many (counted up to 10000).
    pub count: u64,
    /// The first of them.
    pub since: f64,
}

/// One schedule.
#[derive(ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub queue: String,
    pub job: Value,
    pub options: ScheduleOptions,
    /// When it was created or last replaced.
    pub since: f64,
    /// The next slot to fire (null: never again).
    #[schema(required = true)]
    pub next_run: Option<f64>,
    /// The slot fired last.
    #[schema(required = true)]
    pub last_run: Option<f64>,
    /// The id of the job the last run posted.
    #[schema(required = true)]
    pub last_job: Option<u64>,
    pub runs: u64,
    /// The last run that stood in for missed slots, if any.
    #[schema(required = true)]
    pub missed: Option<ScheduleMissed>,
    /// Missed slots over the schedule's life.
    pub missed_total: u64,
    /// Why the queue refused the last run's job, if it did.
    #[schema(required = true)]
    pub last_error: Option<String>,
}

/// `GET /schedules/`: a page of schedules, by name.
#[derive(ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
    /// The number of all schedules.
    pub size: u64,
    /// The `after` of the next page (null on the last).
    #[schema(required = true)]
    pub next: Option<String>,
}
