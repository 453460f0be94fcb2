//! One queue's state and the only code that changes it.
//!
//! Every mutation is a [`Change`] passed to [`QueueState::apply`]. That single door is
//! the seam persistence hangs on: a change is logged before it is applied, and the same
//! `apply` replays the log at recovery. Checks that can refuse a request (duplicate
//! `uniq`, closed queue, nothing ready, unknown lease) are read-only methods the actor
//! calls first, and every decision that depends on something outside the state (the
//! clock, the server's default `max_attempts`) travels inside the change, so `apply`
//! never fails and replaying never diverges.

use std::collections::HashSet;
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use crate::queue::job::{Job, JobId};

use super::backoff::Backoff;
use super::budget::job_cost;
use super::ready::Ready;

/// A change to a queue. Deterministic given the state it applies to, so the log can
/// record it and recovery can replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Jobs appended at the tail of their priority, or (with `due_ms`) held until
    /// that time. With `expires_ms` (a `ttl`), jobs not handed out by then leave the
    /// queue ([`Change::TtlExpired`]).
    Enqueued {
        jobs: Vec<Job>,
        due_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_ms: Option<u64>,
    },
    /// Delayed jobs due at or before `now_ms` move to the head of their priority,
    /// earliest first, at most
    /// `limit` of them (all with `None`), so a mass of jobs coming due at once is
    /// moved in steps that let other requests through; replay moves the same ones.
    Promoted {
        now_ms: u64,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Up to `count` jobs leave the head: fetched; each counts as processed.
    Taken { count: usize },
    /// Jobs taken but never delivered (the client left) return to the head.
    Returned { jobs: Vec<Job> },
    /// A worker reported a failed job.
    FailureCounted,
    /// The queue opened (`true`) or closed (`false`) for fetching.
    OpenSet(bool),
    /// The queue was deleted: jobs, keys, counters and open flag all go.
    Purged,
    /// Up to `count` jobs leave the head on lease until `deadline_ms`; each counts as
    /// processed. They stay in flight until acked, failed or expired. The jobs are
    /// deliveries `first_delivery`, `first_delivery + 1`, ... of the queue, in order
    /// (records written before deliveries existed have none: the queue's counter
    /// numbers them the same way).
    Leased {
        count: usize,
        deadline_ms: u64,
        worker: Option<Arc<str>>,
        #[serde(default)]
        first_delivery: Option<u64>,
    },
    /// Leased jobs never delivered (the client left) return to the head, as if never
    /// handed out: no attempt is counted. With `deliveries` (one per id), a job goes
    /// back only if it is still on that delivery, so a release that comes late never
    /// takes the job from a later holder; without (older records), unconditionally.
    LeaseReleased {
        ids: Vec<JobId>,
        #[serde(default)]
        deliveries: Vec<u64>,
    },
    /// A leased job is done: it leaves the queue.
    Acked { id: JobId },
    /// A leased job failed: one failure and one attempt are counted, and it goes back
    /// to the tail (or is delayed until `due_ms`), or to the dead letters once its
    /// attempts reach `max_attempts`. The `report` (when, by whom, why) joins the
    /// job's last few failures; records written before reports existed have none.
    Failed {
        id: JobId,
        due_ms: Option<u64>,
        max_attempts: u32,
        #[serde(default)]
        report: Option<FailureReport>,
    },
    /// A lease now runs until `deadline_ms`.
    Extended { id: JobId, deadline_ms: u64 },
    /// Leases whose deadline is at or before `now_ms` run out, earliest first, at most
    /// `limit` of them (all with `None`, as in records written before the limit
    /// existed): each counts an attempt and its job goes back to the head, or to the
    /// dead letters at `max_attempts`. The limit is part of the change so that replay
    /// expires exactly the leases the running queue did. Under a retry backoff,
    /// `retry_due_ms` holds, in the order the leases run out, the time each job is
    /// due again (worked out once, jitter and all, when the change was made); jobs
    /// without one go back to the head at once.
    LeasesExpired {
        now_ms: u64,
        max_attempts: u32,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        retry_due_ms: Vec<u64>,
    },
    /// The queue's own `max_attempts` (`None`: the server's default).
    MaxAttemptsSet(Option<u32>),
    /// Dead jobs (one, or all) go back to the tail with their attempts reset.
    DeadRetried { id: Option<JobId> },
    /// Dead jobs (one, or all) are dropped.
    DeadPurged { id: Option<JobId> },
    /// The queue's own `max_jobs` (`None`: the server's default).
    MaxJobsSet(Option<u64>),
    /// The queue's own retry backoff (`None`: the server's default).
    BackoffSet(Option<Backoff>),
    /// Jobs whose ttl ran out at or before `now_ms` without being handed out leave,
    /// earliest first, at most `limit` of them: to the dead letters or dropped, as
    /// the queue's `on_expiry` says.
    TtlExpired { now_ms: u64, limit: Option<usize> },
    /// What becomes of jobs whose ttl runs out.
    OnExpirySet(OnExpiry),
}

/// What becomes of a job whose ttl runs out before it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OnExpiry {
    /// To the dead letters, reason `expired`.
    #[default]
    Dead,
    /// Gone.
    Drop,
}

impl OnExpiry {
    pub fn as_str(self) -> &'static str {
        match self {
            OnExpiry::Dead => "dead",
            OnExpiry::Drop => "drop",
        }
    }
}

/// A job with a ttl, not handed out yet: where it waits (`due`: delayed until then;
/// `None`: ready), so that it can leave without a search.
#[derive(Debug, Clone)]
struct Expiring {
    job: Job,
    due: Option<u64>,
}

/// The counters the routes report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub ready: usize,
    pub delayed: usize,
    pub leased: usize,
    pub dead: usize,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
}

/// A job handed out on lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: Job,
    pub deadline_ms: u64,
    pub worker: Option<Arc<str>>,
    /// Which of the queue's deliveries this lease is (0: granted before deliveries
    /// existed; no token names it).
    #[serde(default)]
    pub delivery: u64,
}

impl Lease {
    /// The token that proves this lease is held.
    pub fn token(&self) -> DeliveryToken {
        DeliveryToken {
            job: self.job.id,
            delivery: self.delivery,
        }
    }
}

/// Names one delivery of a leased job: the job and the queue's delivery number. Only
/// the holder of the lease was told it, so an ack, failure report or extension that
/// carries it comes from that holder, never from a worker whose lease ran out before
/// the job was leased again.
///
/// On the wire it is opaque text: the job id and the delivery number in lowercase hex,
/// joined by a dot (`11.3`). Delivery numbers only grow within a queue (the counter is
/// in the queue's state, advanced by [`QueueState::apply`], logged and snapshotted),
/// and job ids are never reused, so no two deliveries share a token, before or after a
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryToken {
    pub job: JobId,
    pub delivery: u64,
}

impl DeliveryToken {
    /// Appends the token's text to `out`: what `Display` writes, without `core::fmt`
    /// (every lease answer carries one).
    pub fn push_to(&self, out: &mut String) {
        let mut buf = [0; 16];
        out.push_str(crate::hex::lower_hex(self.job.0, &mut buf));
        out.push('.');
        out.push_str(crate::hex::lower_hex(self.delivery, &mut buf));
    }
}

impl fmt::Display for DeliveryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(33);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a lease token")]
pub struct BadToken;

impl FromStr for DeliveryToken {
    type Err = BadToken;

    fn from_str(raw: &str) -> Result<Self, BadToken> {
        let hex = |part: &str| {
            if part.is_empty() || part.len() > 16 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadToken);
            }
            u64::from_str_radix(part, 16).map_err(|_| BadToken)
        };
        let (job, delivery) = raw.split_once('.').ok_or(BadToken)?;
        Ok(DeliveryToken {
            job: JobId(hex(job)?),
            delivery: hex(delivery)?,
        })
    }
}

/// One failure report on a leased job (`PUT /q/NAME/ID`): when, by which worker, and
/// the worker's reason if it gave one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub at_ms: u64,
    pub worker: Option<Arc<str>>,
    pub error: Option<Arc<str>>,
}

/// How many failure reports a job keeps: the newest.
pub const FAILURES_KEPT: usize = 5;

/// Why a job went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeathCause {
    /// A failure report used its last attempt.
    Failed,
    /// A lease running out used its last attempt.
    LeaseExpired,
    /// Its ttl ran out before it was handed out.
    Expired,
}

impl DeathCause {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathCause::Failed => "failed",
            DeathCause::LeaseExpired => "lease expired",
            DeathCause::Expired => "expired",
        }
    }
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    pub job: Job,
    pub attempts: u32,
    /// When it died: the failure report's time, or the deadline of the lease that ran
    /// out (`None` for jobs that died before this was recorded).
    #[serde(default)]
    pub died_ms: Option<u64>,
    #[serde(default)]
    pub cause: Option<DeathCause>,
}

/// A dead letter as listed: the job and its last failure reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub dead: DeadJob,
    pub failures: Arc<[FailureReport]>,
}

/// Where a job is and how it has fared (`GET /q/NAME/ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    pub attempts: u32,
    pub lease_deadline_ms: Option<u64>,
    pub due_ms: Option<u64>,
    pub worker: Option<Arc<str>>,
    /// The job's last failure reports, oldest first (empty if none).
    pub failures: Arc<[FailureReport]>,
    pub priority: u8,
    /// For a dead job: when and why it died.
    pub died_ms: Option<u64>,
    pub cause: Option<DeathCause>,
    /// When the job leaves unless handed out first (its ttl).
    pub expires_ms: Option<u64>,
    /// The job's bytes, as posted (a shared handle, not a copy).
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Ready,
    Delayed,
    Leased,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Delayed => "delayed",
            JobState::Leased => "leased",
            JobState::Dead => "dead",
        }
    }
}

/// Everything a queue holds, as persistent collections: cloning it is O(1), which is
/// how a snapshot takes a consistent image without stalling the queue. `uniq` keys are
/// not stored: they are exactly the keys of the waiting and leased jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueImage {
    /// In fetch order: by priority, most urgent first, then within each priority its
    /// head and the jobs behind it.
    pub ready: Vector<Job>,
    /// How many jobs at the front of the default priority's jobs were put there ahead
    /// of the FIFO order (due delayed jobs, returned jobs): later promotions queue up
    /// behind them, so due jobs keep their due-time order among themselves. (Before
    /// priorities, every job had the default priority: the front of `ready`.)
    pub head_len: usize,
    /// The same for the other priorities, those whose head holds any job; absent
    /// from the images of queues that use no other priority, which are written as
    /// before priorities existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level_heads: Vec<(u8, usize)>,
    /// Keyed by (due time, id) so equal due times keep their creation order.
    pub delayed: OrdMap<(u64, JobId), Job>,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
    #[serde(default)]
    pub leased: OrdMap<JobId, Lease>,
    /// Failed deliveries so far, for jobs that have had any.
    #[serde(default)]
    pub attempts: OrdMap<JobId, u32>,
    #[serde(default)]
    pub dead: OrdMap<JobId, DeadJob>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The number of the last delivery handed out (0: none yet).
    #[serde(default)]
    pub deliveries: u64,
    /// The last [`FAILURES_KEPT`] failure reports, for jobs that have had any: jobs
    /// that never failed cost nothing here.
    #[serde(default)]
    pub failures: OrdMap<JobId, Arc<[FailureReport]>>,
    /// The most jobs (ready, delayed and leased) the queue takes (`None`: the
    /// server's default).
    #[serde(default)]
    pub max_jobs: Option<u64>,
    /// The queue's own retry backoff (`None`: the server's default).
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// When each waiting job that has a ttl and was never handed out expires: jobs
    /// without a ttl cost nothing here.
    #[serde(default)]
    pub ttl: OrdMap<JobId, u64>,
    /// Jobs that expired while ready: they are still in `ready`, skipped (and
    /// dropped) when reached, and swept out once they are many (see
    /// `QueueState::sweep`), since finding one in the ready order would take a scan.
    #[serde(default)]
    pub husks: OrdSet<JobId>,
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

impl Default for QueueImage {
    fn default() -> Self {
        QueueImage {
            ready: Vector::new(),
            head_len: 0,
            level_heads: Vec::new(),
            delayed: OrdMap::new(),
            processed: 0,
            failed: 0,
            open: true,
            leased: OrdMap::new(),
            attempts: OrdMap::new(),
            dead: OrdMap::new(),
            max_attempts: None,
            deliveries: 0,
            failures: OrdMap::new(),
            max_jobs: None,
            backoff: None,
            ttl: OrdMap::new(),
            husks: OrdSet::new(),
            on_expiry: OnExpiry::Dead,
        }
    }
}

/// A queue: its image plus the indexes derived from it.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Everything but the ready jobs, which live in `ready`: here `q.ready` stays
    /// empty, `q.head_len` zero and `q.level_heads` empty, and
    /// [`QueueState::image`] joins them back.
    q: QueueImage,
    /// The ready jobs, by priority.
    ready: Ready,
    /// `uniq` keys of waiting and leased jobs.
    uniq: HashSet<Arc<str>>,
    /// Lease deadlines in time order, for the expiry timer.
    deadlines: OrdSet<(u64, JobId)>,
    /// Jobs with a ttl by expiry time, for the ttl timer (the same jobs as `q.ttl`).
    expiries: OrdMap<(u64, JobId), Expiring>,
    /// What the jobs held (ready, delayed, leased, dead) cost against the memory
    /// budget ([`job_cost`] each).
    bytes: u64,
}

impl QueueState {
    /// Applies one change. The only method that mutates the queue; returns the jobs a
    /// [`Change::Taken`] or [`Change::Leased`] handed out (empty for other changes).
    ///
    /// One arm per change, each a method below, in the order the changes are declared.
    pub fn apply(&mut self, change: Change) -> Vec<Job> {
        match change {
            Change::Enqueued {
                jobs,
                due_ms,
                expires_ms,
            } => self.enqueue(jobs, due_ms, expires_ms),
            Change::Promoted { now_ms, limit } => self.promote(now_ms, limit),
            Change::Taken { count } => return self.take(count),
            Change::Returned { jobs } => self.take_back(jobs),
            Change::FailureCounted => self.count_failure(),
            Change::OpenSet(open) => self.set_open(open),
            Change::Purged => self.purge(),
            Change::Leased {
                count,
                deadline_ms,
                worker,
                first_delivery,
            } => return self.lease_out(count, deadline_ms, worker, first_delivery),
            Change::LeaseReleased { ids, deliveries } => self.release_leases(ids, deliveries),
            Change::Acked { id } => self.ack(id),
            Change::Failed {
                id,
                due_ms,
                max_attempts,
                report,
            } => self.fail(id, due_ms, max_attempts, report),
            Change::Extended { id, deadline_ms } => self.extend(id, deadline_ms),
            Change::LeasesExpired {
                now_ms,
                max_attempts,
                limit,
                retry_due_ms,
            } => self.expire_leases(now_ms, max_attempts, limit, &retry_due_ms),
            Change::MaxAttemptsSet(max) => self.set_max_attempts(max),
            Change::DeadRetried { id } => self.retry_dead(id),
            Change::DeadPurged { id } => self.purge_dead(id),
            Change::MaxJobsSet(max) => self.q.max_jobs = max,
            Change::BackoffSet(backoff) => self.q.backoff = backoff,
            Change::TtlExpired { now_ms, limit } => self.expire_ttl(now_ms, limit),
            Change::OnExpirySet(on_expiry) => self.q.on_expiry = on_expiry,
        }
        Vec::new()
    }

    fn enqueue(&mut self, jobs: Vec<Job>, due_ms: Option<u64>, expires_ms: Option<u64>) {
        for job in jobs {
            self.bytes += job_cost(&job);
            self.hold_key(&job);
            if let Some(expires) = expires_ms {
                self.q.ttl.insert(job.id, expires);
                let waiting = Expiring {
                    job: job.clone(),
                    due: due_ms,
                };
                self.expiries.insert((expires, job.id), waiting);
            }
            self.append(job, due_ms);
        }
    }

    /// Jobs whose ttl ran out leave: a delayed one at once, a ready one as a husk.
    fn expire_ttl(&mut self, now_ms: u64, limit: Option<usize>) {
        let mut left = limit.unwrap_or(usize::MAX);
        while let Some(key) = self
            .expiries
            .get_min()
            .map(|(key, _)| *key)
            .filter(|(expires, _)| *expires <= now_ms && left > 0)
        {
            left -= 1;
            let (expires, id) = key;
            self.q.ttl.remove(&id);
            let Some(Expiring { job, due }) = self.expiries.remove(&key) else {
                continue;
            };
            match due {
                Some(due) => {
                    self.q.delayed.remove(&(due, id));
                }
                None => {
                    self.q.husks.insert(id);
                }
            }
            self.free_key(&job);
            match self.q.on_expiry {
                OnExpiry::Dead => {
                    let dead = DeadJob {
                        attempts: self.attempts(id),
                        job,
                        died_ms: Some(expires),
                        cause: Some(DeathCause::Expired),
                    };
                    self.q.dead.insert(id, dead);
                }
                OnExpiry::Drop => {
                    self.bytes = self.bytes.saturating_sub(job_cost(&job));
                    self.forget_history(id);
                }
            }
        }
        let husks = self.q.husks.len();
        if husks > 64 && husks * 2 > self.ready.len() {
            self.sweep();
        }
    }

    /// Takes the husks out of the ready jobs. O(ready), but only once at least half
    /// the ready jobs are husks (or a dead letter that is one is retried), so it
    /// costs O(1) per expired job.
    fn sweep(&mut self) {
        let husks = std::mem::take(&mut self.q.husks);
        if husks.is_empty() {
            return;
        }
        self.ready.retain(|job| !husks.contains(&job.id));
    }

    /// A job with a ttl was handed out: it no longer expires.
    fn handed_out(&mut self, id: JobId) {
        if let Some(expires) = self.q.ttl.remove(&id) {
            self.expiries.remove(&(expires, id));
        }
    }

    /// Earliest due first, each behind the jobs of its priority promoted before it:
    /// each priority's head keeps its due jobs in due-time order.
    fn promote(&mut self, now_ms: u64, limit: Option<usize>) {
        let mut left = limit.unwrap_or(usize::MAX);
        while let Some(key) = self
            .q
            .delayed
            .get_min()
            .map(|(key, _)| *key)
            .filter(|(due, _)| *due <= now_ms && left > 0)
        {
            left -= 1;
            if let Some(job) = self.q.delayed.remove(&key) {
                if let Some(expires) = self.q.ttl.get(&job.id) {
                    if let Some(waiting) = self.expiries.get_mut(&(*expires, job.id)) {
                        waiting.due = None;
                    }
                }
                self.ready.promote(job);
            }
        }
    }

    /// A fetched job is gone for good: its key is free for a new job, and its
    /// attempts are forgotten.
    fn take(&mut self, count: usize) -> Vec<Job> {
        let taken = self.pop_head(count);
        for job in &taken {
            self.bytes = self.bytes.saturating_sub(job_cost(job));
            self.free_key(job);
            self.forget_history(job.id);
        }
        taken
    }

    /// Undoes a [`Change::Taken`] whose jobs never reached their fetcher, processed
    /// count included.
    fn take_back(&mut self, jobs: Vec<Job>) {
        self.q.processed = self.q.processed.saturating_sub(jobs.len() as u64);
        for job in jobs {
            self.bytes += job_cost(&job);
            self.hold_key(&job);
            self.put_back(job);
        }
    }

    fn count_failure(&mut self) {
        self.q.failed += 1;
    }

    fn set_open(&mut self, open: bool) {
        self.q.open = open;
    }

    fn purge(&mut self) {
        *self = QueueState::default();
    }

    /// Leased jobs keep their `uniq` keys: they may still come back. Each lease is the
    /// next delivery of the queue.
    fn lease_out(
        &mut self,
        count: usize,
        deadline_ms: u64,
        worker: Option<Arc<str>>,
        first_delivery: Option<u64>,
    ) -> Vec<Job> {
        let taken = self.pop_head(count);
        let mut delivery = first_delivery.unwrap_or_else(|| self.next_delivery());
        for job in &taken {
            self.deadlines.insert((deadline_ms, job.id));
            self.q.leased.insert(
                job.id,
                Lease {
                    job: job.clone(),
                    deadline_ms,
                    worker: worker.clone(),
                    delivery,
                },
            );
            self.q.deliveries = self.q.deliveries.max(delivery);
            delivery = delivery.saturating_add(1);
        }
        taken
    }

    /// Undoes a [`Change::Leased`] whose jobs never reached their fetcher: no attempt
    /// is counted, since no worker ever saw them.
    fn release_leases(&mut self, ids: Vec<JobId>, deliveries: Vec<u64>) {
        for (i, id) in ids.into_iter().enumerate() {
            let still_that_delivery = match deliveries.get(i) {
                Some(delivery) => self.lease(id).is_some_and(|l| l.delivery == *delivery),
                None => true,
            };
            if !still_that_delivery {
                continue;
            }
            if let Some(lease) = self.end_lease(id) {
                self.q.processed = self.q.processed.saturating_sub(1);
                self.put_back(lease.job);
            }
        }
    }

    fn ack(&mut self, id: JobId) {
        if let Some(lease) = self.end_lease(id) {
            self.bytes = self.bytes.saturating_sub(job_cost(&lease.job));
            self.free_key(&lease.job);
            self.forget_history(id);
        }
    }

    fn fail(
        &mut self,
        id: JobId,
        due_ms: Option<u64>,
        max_attempts: u32,
        report: Option<FailureReport>,
    ) {
        if let Some(lease) = self.end_lease(id) {
            self.q.failed += 1;
            let died_ms = report.as_ref().map(|r| r.at_ms);
            if let Some(report) = report {
                self.record_failure(id, report);
            }
            let death = (died_ms, DeathCause::Failed);
            if let Some(job) = self.count_attempt(lease.job, max_attempts, death) {
                self.append(job, due_ms);
            }
        }
    }

    /// Adds a report to the job's newest few.
    fn record_failure(&mut self, id: JobId, report: FailureReport) {
        let old = self.q.failures.get(&id).map(|f| &f[..]).unwrap_or(&[]);
        let skip = (old.len() + 1).saturating_sub(FAILURES_KEPT);
        let kept: Arc<[FailureReport]> = old
            .iter()
            .skip(skip)
            .cloned()
            .chain(std::iter::once(report))
            .collect();
        self.q.failures.insert(id, kept);
    }

    /// A job that leaves the queue (or starts over) leaves its attempts and failure
    /// reports behind.
    fn forget_history(&mut self, id: JobId) {
        self.q.attempts.remove(&id);
        self.q.failures.remove(&id);
    }

    fn extend(&mut self, id: JobId, deadline_ms: u64) {
        if let Some(lease) = self.q.leased.get_mut(&id) {
            self.deadlines.remove(&(lease.deadline_ms, id));
            lease.deadline_ms = deadline_ms;
            self.deadlines.insert((deadline_ms, id));
        }
    }

    fn expire_leases(
        &mut self,
        now_ms: u64,
        max_attempts: u32,
        limit: Option<usize>,
        retry_due_ms: &[u64],
    ) {
        let mut left = limit.unwrap_or(usize::MAX);
        let mut retry_due = retry_due_ms.iter();
        while let Some(entry) = self
            .deadlines
            .get_min()
            .copied()
            .filter(|(deadline, _)| *deadline <= now_ms && left > 0)
        {
            left -= 1;
            self.deadlines.remove(&entry);
            let due = retry_due.next().copied();
            if let Some(lease) = self.q.leased.remove(&entry.1) {
                let death = (Some(lease.deadline_ms), DeathCause::LeaseExpired);
                if let Some(job) = self.count_attempt(lease.job, max_attempts, death) {
                    match due {
                        Some(due) => self.append(job, Some(due)),
                        None => self.put_back(job),
                    }
                }
            }
        }
    }

    /// The leases a [`Change::LeasesExpired`] at `now_ms` with `limit` would run
    /// out, in its order, each with the failed deliveries its job will then have had.
    pub fn expiring_leases(&self, now_ms: u64, limit: usize) -> Vec<(JobId, u32)> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(limit)
            .map(|(_, id)| (*id, self.attempts(*id).saturating_add(1)))
            .collect()
    }

    /// The queue's own retry backoff, if any.
    pub fn backoff(&self) -> Option<Backoff> {
        self.q.backoff
    }

    fn set_max_attempts(&mut self, max: Option<u32>) {
        self.q.max_attempts = max;
    }

    fn retry_dead(&mut self, id: Option<JobId>) {
        let retried = self.take_dead(id);
        // An expired job may still be in `ready` as a husk: out with it first, so the
        // job is not there twice.
        if retried.iter().any(|(id, _)| self.q.husks.contains(id)) {
            self.sweep();
        }
        for (id, dead) in retried {
            self.forget_history(id);
            self.bytes = self.bytes.saturating_sub(job_cost(&dead.job));
            let mut job = dead.job;
            // Its key may have been taken by a newer job meanwhile.
            if job.uniq.as_ref().is_some_and(|k| self.uniq.contains(k)) {
                job.uniq = None;
            }
            self.bytes += job_cost(&job);
            self.hold_key(&job);
            self.ready.push_back(job);
        }
    }

    fn purge_dead(&mut self, id: Option<JobId>) {
        for (id, dead) in self.take_dead(id) {
            self.bytes = self.bytes.saturating_sub(job_cost(&dead.job));
            self.forget_history(id);
        }
    }

    /// At the tail of its priority, or held until `due_ms`.
    fn append(&mut self, job: Job, due_ms: Option<u64>) {
        match due_ms {
            Some(due) => {
                self.q.delayed.insert((due, job.id), job);
            }
            None => self.ready.push_back(job),
        }
    }

    fn hold_key(&mut self, job: &Job) {
        if let Some(key) = &job.uniq {
            self.uniq.insert(key.clone());
        }
    }

    fn free_key(&mut self, job: &Job) {
        if let Some(key) = &job.uniq {
            self.uniq.remove(key);
        }
    }

    /// The most urgent ready jobs, FIFO among equals.
    fn pop_head(&mut self, count: usize) -> Vec<Job> {
        let count = count.min(self.ready_len());
        let mut taken = if self.q.husks.is_empty() {
            self.ready.pop(count)
        } else {
            self.pop_live(count)
        };
        self.q.processed += taken.len() as u64;
        if !self.q.ttl.is_empty() {
            for job in &taken {
                self.handed_out(job.id);
            }
        }
        taken.shrink_to_fit();
        taken
    }

    /// The first `count` live ready jobs; husks met on the way are dropped.
    fn pop_live(&mut self, count: usize) -> Vec<Job> {
        let mut taken = Vec::with_capacity(count);
        while taken.len() < count {
            let popped = self.ready.pop(count - taken.len());
            if popped.is_empty() {
                break;
            }
            for job in popped {
                if self.q.husks.remove(&job.id).is_none() {
                    taken.push(job);
                }
            }
        }
        taken
    }

    /// Back where it was taken from, within its priority: ahead of younger jobs at
    /// the head, so jobs coming back in any order keep FIFO order among themselves.
    /// Precisely: before the first head job of its priority with a larger id, else at
    /// the end of that head. The head tree finds that place in O(log n); a scan of the
    /// head per job made a storm of returns quadratic.
    fn put_back(&mut self, job: Job) {
        self.ready.put_back(job);
    }

    fn end_lease(&mut self, id: JobId) -> Option<Lease> {
        let lease = self.q.leased.remove(&id)?;
        self.deadlines.remove(&(lease.deadline_ms, id));
        Some(lease)
    }

    /// Counts a failed delivery; returns the job unless it just died, then (when,
    /// why) is what its dead letter says.
    fn count_attempt(
        &mut self,
        job: Job,
        max_attempts: u32,
        (died_ms, cause): (Option<u64>, DeathCause),
    ) -> Option<Job> {
        let attempts = self.q.attempts.get(&job.id).copied().unwrap_or(0) + 1;
        self.q.attempts.insert(job.id, attempts);
        if attempts >= max_attempts {
            self.free_key(&job);
            let dead = DeadJob {
                job,
                attempts,
                died_ms,
                cause: Some(cause),
            };
            self.q.dead.insert(dead.job.id, dead);
            None
        } else {
            Some(job)
        }
    }

    fn take_dead(&mut self, id: Option<JobId>) -> Vec<(JobId, DeadJob)> {
        match id {
            Some(id) => self
                .q
                .dead
                .remove(&id)
                .map(|d| (id, d))
                .into_iter()
                .collect(),
            None => std::mem::take(&mut self.q.dead).into_iter().collect(),
        }
    }

    /// Whether a job holding `key` is still waiting or leased.
    pub fn holds_uniq(&self, key: &str) -> bool {
        self.uniq.contains(key)
    }

    /// Whether fetching is allowed.
    pub fn is_open(&self) -> bool {
        self.q.open
    }

    /// Number of jobs ready to fetch.
    pub fn ready_len(&self) -> usize {
        self.ready.len().saturating_sub(self.q.husks.len())
    }

    /// The earliest ttl expiry of a job not handed out.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiries.get_min().map(|((expires, _), _)| *expires)
    }

    /// Whether some job's ttl has run out at `now_ms`.
    pub fn has_ttl_expired(&self, now_ms: u64) -> bool {
        self.next_expiry_ms().is_some_and(|at| at <= now_ms)
    }

    /// When job `id` expires unless handed out first (`None`: no ttl, or handed out).
    pub fn expires_ms(&self, id: JobId) -> Option<u64> {
        self.q.ttl.get(&id).copied()
    }

    /// What becomes of jobs whose ttl runs out.
    pub fn on_expiry(&self) -> OnExpiry {
        self.q.on_expiry
    }

    /// The due time of the earliest delayed job.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.q.delayed.get_min().map(|((due, _), _)| *due)
    }

    /// Whether some delayed job is due at `now_ms`.
    pub fn has_due(&self, now_ms: u64) -> bool {
        self.next_due_ms().is_some_and(|due| due <= now_ms)
    }

    /// The earliest lease deadline.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.get_min().map(|(deadline, _)| *deadline)
    }

    /// Whether some lease has run out at `now_ms`.
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.next_deadline_ms().is_some_and(|d| d <= now_ms)
    }

    /// The queue's own `max_jobs` setting, if any.
    pub fn max_jobs(&self) -> Option<u64> {
        self.q.max_jobs
    }

    /// Jobs that count against `max_jobs`: ready, delayed and leased (not dead).
    pub fn live_jobs(&self) -> u64 {
        (self.ready_len() + self.q.delayed.len() + self.q.leased.len()) as u64
    }

    /// What the queue's jobs cost against the memory budget.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The queue's own `max_attempts` setting, if any.
    pub fn max_attempts(&self) -> Option<u32> {
        self.q.max_attempts
    }

    /// The lease on a job, if it is leased.
    pub fn lease(&self, id: JobId) -> Option<&Lease> {
        self.q.leased.get(&id)
    }

    /// Whether `token` names the job's current lease and that lease still runs at
    /// `now_ms`. A lease past its deadline has run out even before
    /// [`Change::LeasesExpired`] puts it back (the timer may be a step behind, as at a
    /// start that finds many leases ran out while the server was down). Delivery 0
    /// (a lease granted before tokens existed) is never held: no token names it.
    pub fn holds(&self, token: DeliveryToken, now_ms: u64) -> bool {
        self.lease(token.job).is_some_and(|lease| {
            lease.delivery != 0 && lease.delivery == token.delivery && lease.deadline_ms > now_ms
        })
    }

    /// Whether job `id` is still in the queue after having been delivered: leased
    /// (to anyone), dead, or back with its attempts counted (a lease that ran out or
    /// was reported failed). Found by key, never by a scan of the queue, since any
    /// client can ask with any id.
    pub fn was_delivered(&self, id: JobId) -> bool {
        self.q.leased.contains_key(&id)
            || self.q.dead.contains_key(&id)
            || self.q.attempts.contains_key(&id)
    }

    /// The number the next lease handed out will have.
    pub fn next_delivery(&self) -> u64 {
        self.q.deliveries.saturating_add(1)
    }

    /// Every lease, by job id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.q.leased.values()
    }

    /// Whether dead job `id` (or any, with `None`) exists.
    pub fn has_dead(&self, id: Option<JobId>) -> bool {
        match id {
            Some(id) => self.q.dead.contains_key(&id),
            None => !self.q.dead.is_empty(),
        }
    }

    /// Up to `limit` dead jobs with ids above `after` (all, with `None`), oldest id
    /// first, with their failure reports; and whether more follow.
    pub fn dead_page(&self, after: Option<JobId>, limit: usize) -> (Vec<DeadLetter>, bool) {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = self.q.dead.range((from, Bound::Unbounded));
        let letters = page
            .by_ref()
            .take(limit)
            .map(|(id, dead)| DeadLetter {
                dead: dead.clone(),
                failures: self.failures(*id),
            })
            .collect();
        (letters, page.next().is_some())
    }

    /// Job `id`'s last failure reports, oldest first.
    pub fn failures(&self, id: JobId) -> Arc<[FailureReport]> {
        self.q
            .failures
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }

    /// Where job `id` is. Ready and delayed jobs are found by a scan: lookups are rare
    /// and an index would cost every enqueue and fetch.
    pub fn find(&self, id: JobId) -> Option<JobInfo> {
        let info = |state, job: &Job| JobInfo {
            state,
            attempts: self.q.attempts.get(&id).copied().unwrap_or(0),
            lease_deadline_ms: None,
            due_ms: None,
            worker: None,
            failures: self.failures(id),
            priority: job.priority,
            died_ms: None,
            cause: None,
            expires_ms: self.q.ttl.get(&id).copied(),
            body: job.body.clone(),
        };
        if let Some(lease) = self.q.leased.get(&id) {
            return Some(JobInfo {
                lease_deadline_ms: Some(lease.deadline_ms),
                worker: lease.worker.clone(),
                ..info(JobState::Leased, &lease.job)
            });
        }
        if let Some(dead) = self.q.dead.get(&id) {
            return Some(JobInfo {
                attempts: dead.attempts,
                died_ms: dead.died_ms,
                cause: dead.cause,
                ..info(JobState::Dead, &dead.job)
            });
        }
        if let Some(job) = self.ready_jobs().find(|job| job.id == id) {
            return Some(info(JobState::Ready, job));
        }
        self.q
            .delayed
            .iter()
            .find(|((_, job), _)| *job == id)
            .map(|((due, _), job)| JobInfo {
                due_ms: Some(*due),
                ..info(JobState::Delayed, job)
            })
    }

    /// The ready jobs' bodies in queue order.
    #[cfg(test)]
    pub fn ready_bodies(&self) -> Vec<Bytes> {
        self.ready_jobs().map(|job| job.body.clone()).collect()
    }

    /// The ready jobs in fetch order.
    pub fn ready_jobs(&self) -> impl Iterator<Item = &Job> {
        let husks = &self.q.husks;
        self.ready
            .iter()
            .filter(move |job| husks.is_empty() || !husks.contains(&job.id))
    }

    /// The delayed jobs with their due times, earliest first.
    pub fn delayed_jobs(&self) -> impl Iterator<Item = (u64, &Job)> {
        self.q.delayed.iter().map(|((due, _), job)| (*due, job))
    }

    /// Job `id`'s failed deliveries so far.
    pub fn attempts(&self, id: JobId) -> u32 {
        self.q.attempts.get(&id).copied().unwrap_or(0)
    }

    pub fn counters(&self) -> Counters {
        Counters {
            ready: self.ready_len(),
            delayed: self.q.delayed.len(),
            leased: self.q.leased.len(),
            dead: self.q.dead.len(),
            processed: self.q.processed,
            failed: self.q.failed,
            open: self.q.open,
        }
    }

    /// A consistent image of the queue: O(1) clones, plus a copy of the heads
    /// (normally a handful of jobs; the many jobs behind them are shared, not copied).
    pub fn image(&self) -> QueueImage {
        let (ready, head_len, level_heads) = self.ready.image();
        QueueImage {
            ready,
            head_len,
            level_heads,
            ..self.q.clone()
        }
    }

    /// The queue an image was taken of.
    pub fn from_image(mut image: QueueImage) -> Self {
        let husks = image.husks.clone();
        let live = |job: &&Job| husks.is_empty() || !husks.contains(&job.id);
        let uniq = image
            .ready
            .iter()
            .filter(live)
            .chain(image.delayed.values())
            .chain(image.leased.values().map(|l| &l.job))
            .filter_map(|job| job.uniq.clone())
            .collect();
        let deadlines = image
            .leased
            .iter()
            .map(|(id, lease)| (lease.deadline_ms, *id))
            .collect();
        let bytes = image
            .ready
            .iter()
            .filter(live)
            .chain(image.delayed.values())
            .chain(image.leased.values().map(|l| &l.job))
            .chain(image.dead.values().map(|d| &d.job))
            .map(job_cost)
            .sum();
        let mut expiries = OrdMap::new();
        if !image.ttl.is_empty() {
            let ready = image.ready.iter().filter(live).map(|job| (None, job));
            let delayed = image
                .delayed
                .iter()
                .map(|((due, _), job)| (Some(*due), job));
            for (due, job) in ready.chain(delayed) {
                if let Some(expires) = image.ttl.get(&job.id) {
                    let waiting = Expiring {
                        job: job.clone(),
                        due,
                    };
                    expiries.insert((*expires, job.id), waiting);
                }
            }
        }
        let ready = Ready::from_image(
            std::mem::take(&mut image.ready),
            image.head_len,
            &image.level_heads,
        );
        image.head_len = 0;
        image.level_heads = Vec::new();
        QueueState {
            q: image,
            ready,
            uniq,
            deadlines,
            expiries,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, uniq: Option<&str>) -> Job {
        Job {
            id: JobId(id),
            body: Bytes::from(format!("{{\"n\":{id}}}")),
            uniq: uniq.map(Arc::from),
            priority: crate::queue::job::DEFAULT_PRIORITY,
        }
    }

    fn ids(jobs: &[Job]) -> Vec<u64> {
        jobs.iter().map(|j| j.id.0).collect()
    }

    fn enqueue(state: &mut QueueState, jobs: Vec<Job>) {
        state.apply(Change::Enqueued {
            jobs,
            due_ms: None,
            expires_ms: None,
        });
    }

    /// The running byte count always equals what an image of the queue adds up to
    /// (which is how recovery counts it), through every way a job enters or leaves.
    #[test]
    fn the_byte_count_follows_jobs_in_and_out() {
        let mut q = QueueState::default();
        let check = |q: &QueueState| {
            assert_eq!(q.bytes(), QueueState::from_image(q.image()).bytes());
        };
        enqueue(
            &mut q,
            (1..=6).map(|i| job(i, Some(&format!("k{i}")))).collect(),
        );
        let one = job_cost(&job(1, Some("k1")));
        assert_eq!(q.bytes(), 6 * one);
        q.apply(Change::Enqueued {
            jobs: vec![job(7, None)],
            due_ms: Some(5),
            expires_ms: None,
        });
        check(&q);
        let taken = q.apply(Change::Taken { count: 1 });
        check(&q);
        q.apply(Change::Returned { jobs: taken });
        check(&q);
        lease(&mut q, 3, 10);
        q.apply(Change::Acked { id: JobId(1) });
        check(&q);
        q.apply(Change::Failed {
            id: JobId(2),
            due_ms: None,
            max_attempts: 1,
            report: None,
        });
        q.apply(Change::LeasesExpired {
            now_ms: 20,
            max_attempts: 1,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        assert_eq!(q.counters().dead, 2);
        check(&q);
        q.apply(Change::DeadRetried { id: Some(JobId(2)) });
        check(&q);
        q.apply(Change::DeadPurged { id: None });
        check(&q);
        // Jobs 2, 4, 5, 6 and 7 (which has no key) are left.
        assert_eq!(q.bytes(), 5 * one - 2);
        q.apply(Change::Purged);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn fifo_order() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        enqueue(&mut q, vec![job(3, None)]);
        assert_eq!(ids(&q.apply(Change::Taken { count: 2 })), vec![1, 2]);
        assert_eq!(ids(&q.apply(Change::Taken { count: 5 })), vec![3]);
        assert!(q.apply(Change::Taken { count: 1 }).is_empty());
        assert_eq!(q.counters().processed, 3);
    }

    #[test]
    fn uniq_key_held_while_waiting_and_freed_on_fetch() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k"))]);
        assert!(q.holds_uniq("k"));
        q.apply(Change::Taken { count: 1 });
        assert!(!q.holds_uniq("k"));
    }

    #[test]
    fn delayed_uniq_key_is_held() {
        let mut q = QueueState::default();
        q.apply(Change::Enqueued {
            jobs: vec![job(1, Some("k"))],
            due_ms: Some(5_000),
            expires_ms: None,
        });
        assert!(q.holds_uniq("k"));
        assert_eq!(q.counters().ready, 0);
        assert_eq!(q.counters().delayed, 1);
    }

    #[test]
    fn promotion_respects_due_time_and_goes_to_head() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(2, None)],
            due_ms: Some(2_000),
            expires_ms: None,
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(1_000),
            expires_ms: None,
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(4, None)],
            due_ms: Some(3_000),
            expires_ms: None,
        });
        assert!(!q.has_due(999));
        q.apply(Change::Promoted {
            now_ms: 999,
            limit: None,
        });
        assert_eq!(q.ready_len(), 1);
        assert!(q.has_due(2_000));
        q.apply(Change::Promoted {
            now_ms: 2_000,
            limit: None,
        });
        assert_eq!(q.next_due_ms(), Some(3_000));
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![3, 2, 1]);
    }

    #[test]
    fn later_promotions_queue_behind_earlier_ones() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(1_000),
            expires_ms: None,
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(4, None)],
            due_ms: Some(2_000),
            expires_ms: None,
        });
        q.apply(Change::Promoted {
            now_ms: 1_000,
            limit: None,
        });
        q.apply(Change::Promoted {
            now_ms: 2_000,
            limit: None,
        });
        assert_eq!(ids(&q.apply(Change::Taken { count: 1 })), vec![3]);
        q.apply(Change::Enqueued {
            jobs: vec![job(5, None)],
            due_ms: Some(3_000),
            expires_ms: None,
        });
        q.apply(Change::Promoted {
            now_ms: 3_000,
            limit: None,
        });
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![4, 5, 1, 2]);
    }

    #[test]
    fn returned_jobs_go_back_to_head_with_keys_and_counts() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("a")), job(2, None), job(3, None)]);
        let taken = q.apply(Change::Taken { count: 2 });
        assert!(!q.holds_uniq("a"));
        q.apply(Change::Returned { jobs: taken });
        assert!(q.holds_uniq("a"));
        assert_eq!(q.counters().processed, 0);
        assert_eq!(ids(&q.apply(Change::Taken { count: 3 })), vec![1, 2, 3]);
    }

    #[test]
    fn image_round_trips_through_cbor() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("a")), job(2, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(3, Some("d"))],
            due_ms: Some(9_000),
            expires_ms: None,
        });
        q.apply(Change::FailureCounted);
        q.apply(Change::OpenSet(false));
        let image = q.image();
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&image, &mut bytes).is_ok());
        let back: QueueImage = ciborium::from_reader(&bytes[..])
            .ok()
            .unwrap_or_else(|| QueueState::default().image());
        assert_eq!(back, image);
        let restored = QueueState::from_image(back);
        assert!(restored.holds_uniq("a") && restored.holds_uniq("d"));
        assert_eq!(restored.counters(), q.counters());
        assert_eq!(restored.image(), q.image());
    }

    #[test]
    fn image_is_isolated_from_later_changes() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        let image = q.image();
        q.apply(Change::Taken { count: 2 });
        enqueue(&mut q, vec![job(3, None)]);
        assert_eq!(image.ready.len(), 2);
        assert_eq!(image.ready[0].id, JobId(1));
    }

    #[test]
    fn jobs_returned_out_of_order_regain_fifo_order() {
        let mut q = QueueState::default();
        enqueue(&mut q, (1..=5).map(|i| job(i, None)).collect());
        let a = q.apply(Change::Taken { count: 1 });
        let b = q.apply(Change::Taken { count: 1 });
        let c = q.apply(Change::Taken { count: 1 });
        q.apply(Change::Returned { jobs: b });
        q.apply(Change::Returned { jobs: c });
        q.apply(Change::Returned { jobs: a });
        assert_eq!(
            ids(&q.apply(Change::Taken { count: 5 })),
            vec![1, 2, 3, 4, 5]
        );
    }

    fn lease(q: &mut QueueState, count: usize, deadline_ms: u64) -> Vec<u64> {
        ids(&q.apply(Change::Leased {
            count,
            deadline_ms,
            worker: Some("w".into()),
            first_delivery: None,
        }))
    }

    #[test]
    fn a_leased_job_is_in_flight_until_acked() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        assert_eq!(lease(&mut q, 1, 1_000), vec![1]);
        let c = q.counters();
        assert_eq!((c.ready, c.leased, c.processed), (1, 1, 1));
        // Its key stays held while it may still come back.
        assert!(q.holds_uniq("k"));
        assert_eq!(q.find(JobId(1)).map(|i| i.state), Some(JobState::Leased));
        q.apply(Change::Acked { id: JobId(1) });
        assert!(!q.holds_uniq("k"));
        assert_eq!(q.find(JobId(1)), None);
        assert_eq!(q.counters().leased, 0);
    }

    #[test]
    fn expired_leases_go_back_to_the_head_then_die() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        for attempt in 1..=2 {
            assert_eq!(lease(&mut q, 1, 1_000 * attempt), vec![1]);
            assert!(!q.has_expired(1_000 * attempt - 1));
            assert!(q.has_expired(1_000 * attempt));
            q.apply(Change::LeasesExpired {
                now_ms: 1_000 * attempt,
                max_attempts: 3,
                limit: None,
                retry_due_ms: Vec::new(),
            });
            let info = q.find(JobId(1));
            assert_eq!(
                info.map(|i| (i.state, i.attempts)),
                Some((JobState::Ready, attempt as u32))
            );
        }
        assert_eq!(lease(&mut q, 1, 5_000), vec![1]);
        q.apply(Change::LeasesExpired {
            now_ms: 5_000,
            max_attempts: 3,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        assert_eq!(
            q.find(JobId(1)).map(|i| (i.state, i.attempts)),
            Some((JobState::Dead, 3))
        );
        assert!(!q.holds_uniq("k"));
        assert_eq!(ids(&q.apply(Change::Taken { count: 5 })), vec![2]);
        q.apply(Change::DeadRetried { id: None });
        assert_eq!(
            q.find(JobId(1)).map(|i| (i.state, i.attempts)),
            Some((JobState::Ready, 0))
        );
        assert!(q.holds_uniq("k"));
    }

    #[test]
    fn failed_leases_count_and_requeue_or_delay() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: None,
            max_attempts: 5,
            report: None,
        });
        assert_eq!(q.counters().failed, 1);
        // Back at the tail.
        assert_eq!(ids(&q.apply(Change::Taken { count: 1 })), vec![2]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: Some(9_000),
            max_attempts: 5,
            report: None,
        });
        let info = q.find(JobId(1));
        assert_eq!(
            info.map(|i| (i.state, i.attempts, i.due_ms)),
            Some((JobState::Delayed, 2, Some(9_000)))
        );
    }

    #[test]
    fn extended_released_and_purged_dead() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(3, None)]);
        lease(&mut q, 2, 1_000);
        q.apply(Change::Extended {
            id: JobId(1),
            deadline_ms: 9_000,
        });
        assert_eq!(q.next_deadline_ms(), Some(1_000));
        q.apply(Change::LeaseReleased {
            ids: vec![JobId(2)],
            deliveries: Vec::new(),
        });
        assert_eq!(q.next_deadline_ms(), Some(9_000));
        let c = q.counters();
        assert_eq!((c.ready, c.leased, c.processed), (2, 1, 1));
        assert_eq!(q.find(JobId(2)).map(|i| i.attempts), Some(0));
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: None,
            max_attempts: 1,
            report: None,
        });
        assert!(q.has_dead(Some(JobId(1))));
        q.apply(Change::DeadPurged { id: Some(JobId(1)) });
        assert!(!q.has_dead(None));
    }

    #[test]
    fn leases_survive_an_image_round_trip() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        lease(&mut q, 1, 7_000);
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&q.image(), &mut bytes).is_ok());
        let image: Option<QueueImage> = ciborium::from_reader(&bytes[..]).ok();
        let back = QueueState::from_image(image.unwrap_or_default());
        assert_eq!(back.next_deadline_ms(), Some(7_000));
        assert!(back.holds_uniq("k"));
        assert_eq!(
            back.lease(JobId(1)).map(|l| l.worker.clone()),
            Some(Some("w".into()))
        );
    }

    /// `n` leased jobs (ids 1..=n, one deadline) with `tail` ready jobs behind them.
    fn leased_storm(n: u64, tail: u64) -> QueueState {
        let mut q = QueueState::default();
        enqueue(&mut q, (1..=n + tail).map(|i| job(i, None)).collect());
        lease(&mut q, n as usize, 1_000);
        q
    }

    fn expire(q: &mut QueueState, limit: Option<usize>) {
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit,
            retry_due_ms: Vec::new(),
        });
    }

    #[test]
    fn backoff_due_times_travel_in_the_changes_and_replay_alike() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(3, None)]);
        lease(&mut q, 3, 1_000);
        q.apply(Change::BackoffSet(Some(Backoff::Fixed { delay_ms: 50 })));
        // A failure with its due time (worked out by the actor) is delayed until then.
        let failed = Change::Failed {
            id: JobId(1),
            due_ms: Some(700),
            max_attempts: 5,
            report: None,
        };
        q.apply(failed.clone());
        // The leases that run out, in deadline order, with their attempts to come.
        assert_eq!(
            q.expiring_leases(1_000, 10),
            vec![(JobId(2), 1), (JobId(3), 1)]
        );
        assert_eq!(q.expiring_leases(1_000, 1), vec![(JobId(2), 1)]);
        assert!(q.expiring_leases(999, 10).is_empty());
        let expired = Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit: None,
            retry_due_ms: vec![1_300, 1_100],
        };
        q.apply(expired.clone());
        let due = |q: &QueueState, id| q.find(JobId(id)).and_then(|i| i.due_ms);
        assert_eq!(
            (due(&q, 1), due(&q, 2), due(&q, 3)),
            (Some(700), Some(1_300), Some(1_100))
        );
        assert_eq!(q.counters().ready, 0);
        assert_eq!(q.attempts(JobId(2)), 1);
        // Due jobs come back to the head in due order.
        q.apply(Change::Promoted {
            now_ms: 1_300,
            limit: None,
        });
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![1, 3, 2]);

        // The same changes replayed on the same start give the same queue, and the
        // policy itself survives an image.
        let mut replayed = QueueState::default();
        enqueue(
            &mut replayed,
            vec![job(1, None), job(2, None), job(3, None)],
        );
        lease(&mut replayed, 3, 1_000);
        replayed.apply(Change::BackoffSet(Some(Backoff::Fixed { delay_ms: 50 })));
        replayed.apply(failed);
        replayed.apply(expired);
        let back = QueueState::from_image(replayed.image());
        assert_eq!(back.backoff(), Some(Backoff::Fixed { delay_ms: 50 }));
        assert_eq!(
            back.delayed_jobs()
                .map(|(d, j)| (d, j.id.0))
                .collect::<Vec<_>>(),
            vec![(700, 1), (1_100, 3), (1_300, 2)]
        );
    }

    fn enqueue_ttl(q: &mut QueueState, ids: &[u64], due_ms: Option<u64>, expires_ms: u64) {
        q.apply(Change::Enqueued {
            jobs: ids
                .iter()
                .map(|i| job(*i, Some(&format!("k{i}"))))
                .collect(),
            due_ms,
            expires_ms: Some(expires_ms),
        });
    }

    #[test]
    fn jobs_expire_in_expiry_order_to_the_dead_letters_without_a_scan() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None)]);
        enqueue_ttl(&mut q, &[2, 3], None, 500);
        enqueue_ttl(&mut q, &[4], None, 300);
        enqueue_ttl(&mut q, &[5], Some(100), 400);
        enqueue(&mut q, vec![job(6, None)]);
        assert_eq!(q.next_expiry_ms(), Some(300));
        assert_eq!(q.find(JobId(2)).and_then(|i| i.expires_ms), Some(500));
        assert_eq!(q.find(JobId(1)).and_then(|i| i.expires_ms), None);
        // Only jobs with a ttl have an entry.
        assert_eq!(q.image().ttl.len(), 4);
        // Job 5 comes due and waits ready, still with its ttl.
        q.apply(Change::Promoted {
            now_ms: 100,
            limit: None,
        });
        q.apply(Change::TtlExpired {
            now_ms: 400,
            limit: Some(1),
        });
        assert_eq!(q.next_expiry_ms(), Some(400));
        q.apply(Change::TtlExpired {
            now_ms: 400,
            limit: None,
        });
        let dead: Vec<u64> = q
            .dead_page(None, 10)
            .0
            .iter()
            .map(|d| d.dead.job.id.0)
            .collect();
        assert_eq!(dead, vec![4, 5]);
        assert_eq!(
            q.find(JobId(4)).map(|i| (i.state, i.died_ms, i.cause)),
            Some((JobState::Dead, Some(300), Some(DeathCause::Expired)))
        );
        assert_eq!(q.counters().ready, 4);
        assert!(!q.holds_uniq("k4") && q.holds_uniq("k2"));
        // The byte count, uniq keys and expiries come back the same from an image.
        let back = QueueState::from_image(q.image());
        assert_eq!(back.bytes(), q.bytes());
        assert_eq!(back.counters(), q.counters());
        assert_eq!(back.next_expiry_ms(), Some(500));
        assert!(!back.holds_uniq("k4"));
        // Fetches skip the expired ones.
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![1, 2, 3, 6]);
        assert_eq!(q.next_expiry_ms(), None);
        assert!(q.image().ttl.is_empty() && q.image().husks.is_empty());
    }

    #[test]
    fn a_job_handed_out_never_expires() {
        let mut q = QueueState::default();
        enqueue_ttl(&mut q, &[1, 2], None, 500);
        lease(&mut q, 1, 100);
        assert_eq!(q.find(JobId(1)).and_then(|i| i.expires_ms), None);
        // Its lease runs out and it comes back: still no ttl.
        expire(&mut q, None);
        q.apply(Change::TtlExpired {
            now_ms: 10_000,
            limit: None,
        });
        assert_eq!(q.find(JobId(1)).map(|i| i.state), Some(JobState::Ready));
        assert_eq!(q.find(JobId(2)).map(|i| i.state), Some(JobState::Dead));
        assert_eq!(q.next_expiry_ms(), None);
    }

    #[test]
    fn dropped_jobs_free_their_bytes_and_husks_are_swept_out() {
        let mut q = QueueState::default();
        q.apply(Change::OnExpirySet(OnExpiry::Drop));
        enqueue_ttl(&mut q, &(1..=300).collect::<Vec<_>>(), None, 50);
        enqueue(&mut q, vec![job(301, None)]);
        // Some of them put back at the head, so both ready parts hold husks.
        lease(&mut q, 10, 10);
        expire(&mut q, None);
        let one = job_cost(&job(301, None));
        q.apply(Change::TtlExpired {
            now_ms: 60,
            limit: None,
        });
        assert_eq!(q.counters().ready, 11);
        assert_eq!(q.counters().dead, 0);
        // Swept at once: most of the queue was husks.
        assert!(q.image().husks.is_empty());
        assert_eq!(q.image().ready.len(), 11);
        assert!(q.bytes() >= one && q.bytes() < 12 * one);
        assert_eq!(QueueState::from_image(q.image()).bytes(), q.bytes());
    }

    #[test]
    fn a_retried_expired_job_is_in_the_queue_once() {
        let mut q = QueueState::default();
        enqueue_ttl(&mut q, &[1], None, 50);
        enqueue(&mut q, vec![job(2, None)]);
        q.apply(Change::TtlExpired {
            now_ms: 60,
            limit: None,
        });
        assert_eq!(q.image().husks.len(), 1);
        q.apply(Change::DeadRetried { id: None });
        assert_eq!(q.counters().ready, 2);
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![2, 1]);
        assert_eq!(q.counters().ready, 0);
    }

    #[test]
    fn records_from_before_ttl_read_and_new_ones_without_it_are_the_same_bytes() {
        #[derive(Serialize)]
        enum Old {
            Enqueued { jobs: Vec<Job>, due_ms: Option<u64> },
        }
        let old = Old::Enqueued {
            jobs: vec![job(1, None)],
            due_ms: Some(5),
        };
        let mut old_bytes = Vec::new();
        assert!(ciborium::into_writer(&old, &mut old_bytes).is_ok());
        let read: Option<Change> = ciborium::from_reader(&old_bytes[..]).ok();
        let new = Change::Enqueued {
            jobs: vec![job(1, None)],
            due_ms: Some(5),
            expires_ms: None,
        };
        assert_eq!(read.as_ref(), Some(&new));
        let mut new_bytes = Vec::new();
        assert!(ciborium::into_writer(&new, &mut new_bytes).is_ok());
        assert_eq!(new_bytes, old_bytes, "no ttl, no new bytes in the log");
    }

    #[test]
    fn a_lease_expiry_without_due_times_puts_jobs_back_at_the_head() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        lease(&mut q, 1, 1_000);
        expire(&mut q, None);
        assert_eq!(q.counters().delayed, 0);
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![1, 2]);
    }

    #[test]
    fn a_lease_storm_comes_back_in_order_with_attempts_counted() {
        let (n, tail) = (100_000, 3);
        let mut at_once = leased_storm(n, tail);
        expire(&mut at_once, None);
        assert!(!at_once.has_expired(u64::MAX));
        let c = at_once.counters();
        assert_eq!((c.ready, c.leased), ((n + tail) as usize, 0));
        assert_eq!(at_once.find(JobId(n / 2)).map(|i| i.attempts), Some(1));

        // In bounded steps, as the actor does it: the same queue at the end.
        let mut in_steps = leased_storm(n, tail);
        let mut steps = 0;
        while in_steps.has_expired(1_000) {
            expire(&mut in_steps, Some(4_096));
            steps += 1;
        }
        assert_eq!(steps, n.div_ceil(4_096));
        assert_eq!(in_steps.image(), at_once.image());

        let all = ids(&at_once.apply(Change::Taken { count: usize::MAX }));
        assert_eq!(all, (1..=n + tail).collect::<Vec<_>>());
    }

    #[test]
    fn returns_keep_their_place_among_promoted_jobs() {
        // Head [5, 3] (promoted in due order), tail [7].
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(4, None)]);
        lease(&mut q, 3, 1_000);
        q.apply(Change::Enqueued {
            jobs: vec![job(5, None)],
            due_ms: Some(10),
            expires_ms: None,
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(20),
            expires_ms: None,
        });
        enqueue(&mut q, vec![job(7, None)]);
        q.apply(Change::Promoted {
            now_ms: 20,
            limit: None,
        });
        // 4 goes before 5 (the first larger id), 1 and 2 before 4; nothing moves 3.
        expire(&mut q, None);
        let back = QueueState::from_image(q.image());
        assert_eq!(
            ids(&q.apply(Change::Taken { count: 10 })),
            vec![1, 2, 4, 5, 3, 7]
        );
        // A queue rebuilt from its image indexes the same head.
        let mut back = back;
        back.apply(Change::Returned {
            jobs: vec![job(6, None)],
        });
        assert_eq!(
            ids(&back.apply(Change::Taken { count: 10 })),
            vec![1, 2, 4, 5, 3, 6, 7]
        );
    }

    /// Counted, not timed (timings belong in benchmarks): putting expired jobs back
    /// visits about 3 log2(n) nodes of the head's tree a job, so twice the leases cost
    /// barely more a job; the old scan of the head looked at n/2 jobs a job.
    #[test]
    fn a_lease_storm_is_not_quadratic() {
        let per_job = |n: u64| {
            let mut q = leased_storm(n, 10);
            let before = q.ready.steps();
            expire(&mut q, None);
            assert_eq!(q.counters().ready, (n + 10) as usize);
            (q.ready.steps() - before) / n
        };
        let (half, full) = (per_job(50_000), per_job(100_000));
        assert!(full < 120, "{full} steps a job for 100,000");
        assert!(
            full <= half + 10,
            "{half} steps a job for 50,000, {full} for 100,000"
        );
    }

    #[test]
    fn promotion_in_bounded_steps_keeps_due_order() {
        let fill = |q: &mut QueueState| {
            for i in 1..=10u64 {
                q.apply(Change::Enqueued {
                    jobs: vec![job(i, None)],
                    due_ms: Some(100 + (i % 3)),
                    expires_ms: None,
                });
            }
        };
        let (mut stepped, mut whole) = (QueueState::default(), QueueState::default());
        fill(&mut stepped);
        fill(&mut whole);
        whole.apply(Change::Promoted {
            now_ms: 200,
            limit: None,
        });
        let mut steps = 0;
        while stepped.has_due(200) {
            stepped.apply(Change::Promoted {
                now_ms: 200,
                limit: Some(3),
            });
            steps += 1;
        }
        assert_eq!(steps, 4);
        assert_eq!(stepped.ready_bodies(), whole.ready_bodies());
    }

    #[test]
    fn old_expiry_records_without_a_limit_still_read() {
        #[derive(Serialize)]
        enum Old {
            LeasesExpired { now_ms: u64, max_attempts: u32 },
        }
        let mut bytes = Vec::new();
        let old = Old::LeasesExpired {
            now_ms: 7,
            max_attempts: 3,
        };
        assert!(ciborium::into_writer(&old, &mut bytes).is_ok());
        let read: Option<Change> = ciborium::from_reader(&bytes[..]).ok();
        assert_eq!(
            read,
            Some(Change::LeasesExpired {
                now_ms: 7,
                max_attempts: 3,
                limit: None,
                retry_due_ms: Vec::new(),
            })
        );
    }

    fn token_of(q: &QueueState, id: u64) -> Option<DeliveryToken> {
        q.lease(JobId(id)).map(Lease::token)
    }

    #[test]
    fn a_job_counts_as_delivered_while_its_history_is_here() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(3, None)]);
        assert!(!q.was_delivered(JobId(1)), "ready, never handed out");
        lease(&mut q, 2, 1_000);
        assert!(q.was_delivered(JobId(1)) && q.was_delivered(JobId(2)));
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        assert!(q.lease(JobId(1)).is_none());
        assert!(
            q.was_delivered(JobId(1)),
            "back in the queue, an attempt counted"
        );
        lease(&mut q, 1, 2_000);
        q.apply(Change::Acked { id: JobId(1) });
        assert!(!q.was_delivered(JobId(1)), "acked: gone");
        assert!(!q.was_delivered(JobId(3)) && !q.was_delivered(JobId(99)));
    }

    #[test]
    fn every_lease_is_a_new_delivery_and_its_token_round_trips() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(3, None)]);
        assert_eq!(q.next_delivery(), 1);
        lease(&mut q, 2, 1_000);
        let first = token_of(&q, 1);
        assert_eq!(first.map(|t| t.delivery), Some(1));
        assert_eq!(token_of(&q, 2).map(|t| t.delivery), Some(2));
        // Run out, leased again: a new delivery, and only its token holds the job.
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        q.apply(Change::Leased {
            count: 1,
            deadline_ms: 5_000,
            worker: None,
            first_delivery: Some(q.next_delivery()),
        });
        let second = token_of(&q, 1);
        assert_eq!(second.map(|t| t.delivery), Some(3));
        assert!(first.is_some_and(|t| !q.holds(t, 0)));
        assert!(second.is_some_and(|t| q.holds(t, 0)));
        // Past its deadline the lease has run out, expired by the timer or not.
        assert!(second.is_some_and(|t| q.holds(t, 4_999) && !q.holds(t, 5_000)));

        let text = second.map(|t| t.to_string()).unwrap_or_default();
        assert_eq!(text, "1.3");
        assert_eq!(text.parse::<DeliveryToken>().ok(), second);
        let big = DeliveryToken {
            job: JobId(u64::MAX),
            delivery: 255,
        };
        assert_eq!(big.to_string().parse::<DeliveryToken>(), Ok(big));
        for bad in [
            "",
            "17",
            "1.",
            ".1",
            "1.3.4",
            "+1.3",
            "1.-3",
            "g.1",
            "1 .3",
            "11111111111111111.1",
        ] {
            assert_eq!(bad.parse::<DeliveryToken>(), Err(BadToken), "{bad:?}");
        }

        // The counter and the tokens survive an image and a replay alike.
        let back = QueueState::from_image(q.image());
        assert_eq!(back.next_delivery(), 4);
        assert!(second.is_some_and(|t| back.holds(t, 0)));
    }

    #[test]
    fn a_late_release_leaves_a_later_delivery_alone() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None)]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        lease(&mut q, 1, 9_000);
        q.apply(Change::LeaseReleased {
            ids: vec![JobId(1)],
            deliveries: vec![1],
        });
        assert_eq!(token_of(&q, 1).map(|t| t.delivery), Some(2));
        q.apply(Change::LeaseReleased {
            ids: vec![JobId(1)],
            deliveries: vec![2],
        });
        assert_eq!(q.find(JobId(1)).map(|i| i.state), Some(JobState::Ready));
    }

    fn report(at_ms: u64, error: &str) -> Option<FailureReport> {
        Some(FailureReport {
            at_ms,
            worker: Some("w".into()),
            error: Some(error.into()),
        })
    }

    #[test]
    fn failures_keep_the_newest_reports_and_say_why_a_job_died() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None)]);
        for n in 1..=7u64 {
            lease(&mut q, 1, 1_000);
            q.apply(Change::Failed {
                id: JobId(1),
                due_ms: None,
                max_attempts: 7,
                report: report(n, &format!("e{n}")),
            });
        }
        let info = q.find(JobId(1));
        let errors: Vec<String> = info
            .as_ref()
            .map(|i| {
                i.failures
                    .iter()
                    .filter_map(|f| f.error.as_deref().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(errors, ["e3", "e4", "e5", "e6", "e7"]);
        assert_eq!(
            info.map(|i| (i.state, i.died_ms, i.cause)),
            Some((JobState::Dead, Some(7), Some(DeathCause::Failed)))
        );
        let (page, more) = q.dead_page(None, 10);
        assert!(!more);
        assert_eq!(page.len(), 1);
        assert_eq!(page.first().map(|d| d.failures.len()), Some(FAILURES_KEPT));
        // Jobs that never failed have no entry at all.
        assert_eq!(q.image().failures.len(), 1);
        // A retry starts over.
        q.apply(Change::DeadRetried { id: None });
        assert!(q.image().failures.is_empty());

        // Death by expiry: at the lease's deadline.
        lease(&mut q, 1, 4_000);
        q.apply(Change::LeasesExpired {
            now_ms: 4_500,
            max_attempts: 1,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        assert_eq!(
            q.find(JobId(1)).map(|i| (i.died_ms, i.cause)),
            Some((Some(4_000), Some(DeathCause::LeaseExpired)))
        );
    }

    #[test]
    fn dead_letters_come_in_pages() {
        let mut q = QueueState::default();
        enqueue(&mut q, (1..=5).map(|i| job(i, None)).collect());
        lease(&mut q, 5, 1_000);
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 1,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        let ids = |page: &[DeadLetter]| page.iter().map(|d| d.dead.job.id.0).collect::<Vec<_>>();
        let (page, more) = q.dead_page(None, 2);
        assert_eq!((ids(&page), more), (vec![1, 2], true));
        let (page, more) = q.dead_page(Some(JobId(2)), 2);
        assert_eq!((ids(&page), more), (vec![3, 4], true));
        let (page, more) = q.dead_page(Some(JobId(4)), 2);
        assert_eq!((ids(&page), more), (vec![5], false));
        let (page, more) = q.dead_page(Some(JobId(5)), 2);
        assert_eq!((ids(&page), more), (vec![], false));
    }

    #[test]
    fn records_and_images_from_before_deliveries_still_read() {
        #[derive(Serialize)]
        enum OldChange {
            Leased {
                count: usize,
                deadline_ms: u64,
                worker: Option<Arc<str>>,
            },
            LeaseReleased {
                ids: Vec<JobId>,
            },
            Failed {
                id: JobId,
                due_ms: Option<u64>,
                max_attempts: u32,
            },
        }
        let read = |old: &OldChange| -> Option<Change> {
            let mut bytes = Vec::new();
            ciborium::into_writer(old, &mut bytes).ok()?;
            ciborium::from_reader(&bytes[..]).ok()
        };
        let leased = read(&OldChange::Leased {
            count: 1,
            deadline_ms: 5,
            worker: None,
        });
        assert_eq!(
            leased,
            Some(Change::Leased {
                count: 1,
                deadline_ms: 5,
                worker: None,
                first_delivery: None
            })
        );
        let released = read(&OldChange::LeaseReleased {
            ids: vec![JobId(3)],
        });
        assert_eq!(
            released,
            Some(Change::LeaseReleased {
                ids: vec![JobId(3)],
                deliveries: Vec::new()
            })
        );
        let failed = read(&OldChange::Failed {
            id: JobId(3),
            due_ms: None,
            max_attempts: 2,
        });
        assert_eq!(
            failed,
            Some(Change::Failed {
                id: JobId(3),
                due_ms: None,
                max_attempts: 2,
                report: None
            })
        );

        // An image of the old shape: leases and dead jobs without the new fields.
        #[derive(Serialize)]
        struct OldLease {
            job: Job,
            deadline_ms: u64,
            worker: Option<Arc<str>>,
        }
        #[derive(Serialize)]
        struct OldDead {
            job: Job,
            attempts: u32,
        }
        #[derive(Serialize)]
        struct OldImage {
            ready: Vector<Job>,
            head_len: usize,
            delayed: OrdMap<(u64, JobId), Job>,
            processed: u64,
            failed: u64,
            open: bool,
            leased: OrdMap<JobId, OldLease>,
            attempts: OrdMap<JobId, u32>,
            dead: OrdMap<JobId, OldDead>,
            max_attempts: Option<u32>,
        }
        let old = OldImage {
            ready: Vector::new(),
            head_len: 0,
            delayed: OrdMap::new(),
            processed: 2,
            failed: 0,
            open: true,
            leased: OrdMap::unit(
                JobId(1),
                OldLease {
                    job: job(1, None),
                    deadline_ms: 9,
                    worker: None,
                },
            ),
            attempts: OrdMap::unit(JobId(2), 1),
            dead: OrdMap::unit(
                JobId(2),
                OldDead {
                    job: job(2, None),
                    attempts: 1,
                },
            ),
            max_attempts: None,
        };
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&old, &mut bytes).is_ok());
        let image: Option<QueueImage> = ciborium::from_reader(&bytes[..]).ok();
        let mut q = QueueState::from_image(image.unwrap_or_default());
        assert_eq!(q.lease(JobId(1)).map(|l| l.delivery), Some(0));
        // "Leases granted by a server older than delivery tokens cannot be acked": no
        // token names them, not even one that says delivery 0.
        let zero = DeliveryToken {
            job: JobId(1),
            delivery: 0,
        };
        assert!(!q.holds(zero, 0));
        assert_eq!(
            q.find(JobId(2)).map(|i| (i.state, i.died_ms, i.cause)),
            Some((JobState::Dead, None, None))
        );
        // New deliveries start at 1: no token names the old lease but its own.
        enqueue(&mut q, vec![job(3, None)]);
        lease(&mut q, 1, 9);
        assert_eq!(token_of(&q, 3).map(|t| t.delivery), Some(1));
    }

    fn pjob(id: u64, priority: u8) -> Job {
        Job {
            priority,
            ..job(id, None)
        }
    }

    fn take_all(q: &mut QueueState) -> Vec<u64> {
        ids(&q.apply(Change::Taken { count: usize::MAX }))
    }

    #[test]
    fn the_most_urgent_job_comes_first_fifo_among_equals() {
        let mut q = QueueState::default();
        let priorities = [200, 128, 5, 128, 5, 0, 255, 200];
        let jobs = (1..).zip(priorities).map(|(id, p)| pjob(id, p)).collect();
        enqueue(&mut q, jobs);
        let listed: Vec<u64> = q.ready_jobs().map(|j| j.id.0).collect();
        assert_eq!(listed, [6, 3, 5, 2, 4, 1, 8, 7]);
        // A batch fetch crosses levels in the same order.
        assert_eq!(ids(&q.apply(Change::Taken { count: 4 })), [6, 3, 5, 2]);
        assert_eq!(take_all(&mut q), [4, 1, 8, 7]);
        assert_eq!(q.ready_len(), 0);
        assert!(q.ready.is_single_level(), "empty levels go");
    }

    #[test]
    fn a_due_delayed_job_goes_to_the_head_of_its_own_priority() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![pjob(1, 10), pjob(2, 128), pjob(3, 200)]);
        for (id, p, due) in [(4, 200, 20), (5, 128, 10), (6, 200, 10)] {
            q.apply(Change::Enqueued {
                jobs: vec![pjob(id, p)],
                due_ms: Some(due),
                expires_ms: None,
            });
        }
        q.apply(Change::Promoted {
            now_ms: 20,
            limit: None,
        });
        // 5 before 2 (its level's head), 6 and 4 before 3 in due order, and none of
        // them before the more urgent 1.
        assert_eq!(take_all(&mut q), [1, 5, 2, 6, 4, 3]);
    }

    #[test]
    fn failed_and_expired_jobs_keep_their_priority_and_place_in_it() {
        let mut q = QueueState::default();
        enqueue(
            &mut q,
            vec![pjob(1, 50), pjob(2, 50), pjob(3, 50), pjob(4, 128)],
        );
        assert_eq!(lease(&mut q, 2, 1_000), [1, 2]);
        // Job 2 fails: to the tail of priority 50, still ahead of job 4.
        q.apply(Change::Failed {
            id: JobId(2),
            due_ms: None,
            max_attempts: 5,
            report: None,
        });
        assert_eq!(q.find(JobId(2)).map(|i| i.priority), Some(50));
        let listed: Vec<u64> = q.ready_jobs().map(|j| j.id.0).collect();
        assert_eq!(listed, [3, 2, 4]);
        // Job 1's lease runs out: back to the head of priority 50.
        expire(&mut q, None);
        assert_eq!(take_all(&mut q), [1, 3, 2, 4]);

        // A delayed retry comes back to the head of its level, too.
        enqueue(&mut q, vec![pjob(5, 7), pjob(6, 7), pjob(7, 128)]);
        assert_eq!(lease(&mut q, 1, 1_000), [5]);
        q.apply(Change::Failed {
            id: JobId(5),
            due_ms: Some(500),
            max_attempts: 5,
            report: None,
        });
        q.apply(Change::Promoted {
            now_ms: 500,
            limit: None,
        });
        assert_eq!(take_all(&mut q), [5, 6, 7]);
    }

    #[test]
    fn a_dead_job_retried_keeps_its_priority() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![pjob(1, 3)]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 1,
            limit: None,
            retry_due_ms: Vec::new(),
        });
        enqueue(&mut q, vec![pjob(2, 128)]);
        q.apply(Change::DeadRetried { id: None });
        assert_eq!(take_all(&mut q), [1, 2]);
    }

    #[test]
    fn an_image_keeps_every_level_and_its_head() {
        let mut q = QueueState::default();
        enqueue(
            &mut q,
            (1..=12)
                .map(|id| pjob(id, [9, 128, 250][id as usize % 3]))
                .collect(),
        );
        // Heads in three levels: leases that run out come back to them.
        lease(&mut q, 9, 1_000);
        enqueue(&mut q, vec![pjob(13, 9), pjob(14, 128), pjob(15, 250)]);
        expire(&mut q, None);
        q.apply(Change::Enqueued {
            jobs: vec![pjob(16, 250)],
            due_ms: Some(1),
            expires_ms: None,
        });
        let image = q.image();
        assert_eq!(image.level_heads.len(), 2);
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&image, &mut bytes).is_ok());
        let read: Option<QueueImage> = ciborium::from_reader(&bytes[..]).ok();
        assert_eq!(read.as_ref(), Some(&image));
        let mut back = QueueState::from_image(read.unwrap_or_default());
        assert_eq!(back.image(), image);
        // Both go on alike: a promotion lands at the end of its level's head.
        for s in [&mut q, &mut back] {
            s.apply(Change::Promoted {
                now_ms: 1,
                limit: None,
            });
        }
        let order = take_all(&mut q);
        assert_eq!(take_all(&mut back), order);
        assert_eq!(order.len(), 16);
        assert_eq!(&order[..5], [3, 6, 9, 12, 13]);
    }

    #[test]
    fn the_image_of_a_queue_of_default_priorities_is_written_as_before() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        lease(&mut q, 1, 1_000);
        expire(&mut q, None);
        let image = q.image();
        assert!(image.level_heads.is_empty());
        assert_eq!(image.head_len, 1);
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&image, &mut bytes).is_ok());
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("level_heads"));
    }

    #[test]
    fn counters_and_open_flag() {
        let mut q = QueueState::default();
        assert!(q.is_open());
        q.apply(Change::OpenSet(false));
        q.apply(Change::FailureCounted);
        let c = q.counters();
        assert!(!c.open);
        assert_eq!(c.failed, 1);
    }
}
