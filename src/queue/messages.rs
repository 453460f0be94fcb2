//! What a queue actor can be asked, each message next to its handler.
//!
//! Once the queue is purged its handlers answer [`QueueError::Gone`] ([`TakeImage`]:
//! `None`), so a request that raced the delete looks the queue up again and finds its
//! new incarnation. Handlers that change the queue answer only once the change is as
//! durable as the fsync policy requires ([`when_durable`]; fetches in
//! [`delivery`](super::delivery)).

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::queue::actor::QueueActor;
use crate::queue::backoff::Backoff;
use crate::queue::budget::job_cost;
use crate::queue::error::{QueueError, QueueResult};
use crate::queue::job::{Job, JobId};
use crate::queue::state::{
    Change, Counters, DeadLetter, DeliveryToken, FailureReport, JobInfo, OnExpiry,
};
use crate::queue::totals::QueueTally;
use crate::storage::format::QueueSnapshot;
use crate::storage::log::Durable;

/// A handler answer that waits until its change is durable (under `fsync = "always"`;
/// otherwise it is ready at once).
fn when_durable<T: 'static>(durable: Durable, value: T) -> ResponseFuture<QueueResult<T>> {
    Box::pin(async move {
        durable.wait().await?;
        Ok(value)
    })
}

/// An answer that needs no waiting, from a handler whose other answers may wait.
fn answer<T: 'static>(result: QueueResult<T>) -> ResponseFuture<QueueResult<T>> {
    Box::pin(std::future::ready(result))
}

impl QueueActor {
    /// Refuses to act on a lease for anyone but its holder: the job must be on the
    /// delivery `token` names, and that lease must not have run out. A job that is
    /// still here but not on that delivery, or whose lease is past its deadline (its
    /// expiry may not be processed yet; perhaps another worker holds it now), is
    /// [`QueueError::LeaseNotHeld`]; a job that is not here at all, not found. (A job
    /// put back with no attempt counted, because its hand-out never reached anyone,
    /// also answers not found: nobody holds a token for that delivery.)
    fn check_held(&self, token: DeliveryToken) -> QueueResult<()> {
        if self.state.holds(token, now_ms()) {
            Ok(())
        } else if self.state.was_delivered(token.job) {
            Err(QueueError::LeaseNotHeld)
        } else {
            Err(QueueError::JobNotFound)
        }
    }

    /// Refuses jobs whose `uniq` key is held by a waiting or leased job, or by another
    /// job of the same batch.
    fn check_unique(&self, jobs: &[Job]) -> QueueResult<()> {
        let mut seen = HashSet::new();
        for key in jobs.iter().filter_map(|job| job.uniq.as_ref()) {
            if self.state.holds_uniq(key) || !seen.insert(key.clone()) {
                return Err(QueueError::Duplicate);
            }
        }
        Ok(())
    }
}

impl QueueActor {
    /// Refuses jobs (all of them: a batch is all or nothing) that would take the
    /// queue past its `max_jobs`, or the server's jobs past the memory budget.
    fn check_room(&self, jobs: &[Job]) -> QueueResult<()> {
        if let Some(max) = self.max_jobs() {
            if self.state.live_jobs().saturating_add(jobs.len() as u64) > max {
                return Err(QueueError::TooManyJobs(max));
            }
        }
        let cost = jobs.iter().map(job_cost).sum();
        if !self.config.budget.admits(cost) {
            return Err(QueueError::MemoryFull);
        }
        Ok(())
    }
}

/// Why jobs are enqueued, which decides whether a failure is counted with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// New jobs (`POST /q/NAME`, batch `POST`).
    Posted,
    /// A worker reports a job it failed (`PUT /q/NAME`): queued again as a new job,
    /// and one failed job is counted.
    ReportedFailed,
}

/// Adds jobs (POST, PUT and batch POST).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct Enqueue {
    pub jobs: Vec<Job>,
    /// Epoch milliseconds before which the jobs may not be fetched.
    pub due_ms: Option<u64>,
    /// Epoch milliseconds by which the jobs leave unless handed out (their ttl).
    pub expires_ms: Option<u64>,
    pub arrival: Arrival,
}

impl Handler<Enqueue> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if let Err(e) = self
            .check_unique(&msg.jobs)
            .and_then(|()| self.check_room(&msg.jobs))
        {
            return answer(Err(e));
        }
        let due_ms = msg.due_ms.filter(|due| *due > now_ms());
        let committed = self.commit(
            Change::Enqueued {
                jobs: msg.jobs,
                due_ms,
                expires_ms: msg.expires_ms,
            },
            ctx,
        );
        match committed {
            Ok((_, durable)) => {
                // After the jobs, not before: if the log refuses the jobs, nothing at
                // all has changed; if it then refuses only the count (the disk filled
                // in between), the jobs are safe and one failure goes uncounted.
                if msg.arrival == Arrival::ReportedFailed {
                    self.commit_quietly(Change::FailureCounted, ctx);
                }
                // Ordered after the Enqueued record, so a waiter's job is never handed
                // out by a change the log could lose while keeping the job's creation.
                self.serve_waiters(ctx);
                when_durable(durable, ())
            }
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Jobs handed to a fetcher: for a lease, with each job's delivery token (in the
/// same order); for a plain fetch, no tokens. Reads as its jobs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Handout {
    pub jobs: Vec<Job>,
    pub tokens: Vec<DeliveryToken>,
    /// Leased jobs: each one's failed deliveries before this one (what lookup calls
    /// `attempts`), so a worker knows a retry without asking.
    pub attempts: Vec<u32>,
}

impl Deref for Handout {
    type Target = [Job];

    fn deref(&self) -> &[Job] {
        &self.jobs
    }
}

/// Where a fetch's jobs (or its refusal) go.
pub type Reply = oneshot::Sender<QueueResult<Handout>>;

/// A lease asked for by a fetch.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub duration_ms: u64,
    pub worker: Option<Arc<str>>,
}

/// Takes (or leases) up to `max` jobs from the head, waiting up to `wait` for one if
/// none is ready. The reply travels on the caller's own channel: if the caller has
/// gone by the time the jobs are ready (and, under `fsync = "always"`, durably taken),
/// the send fails and the jobs go back instead of vanishing with a discarded reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fetch {
    pub max: usize,
    pub lease: Option<LeaseRequest>,
    pub wait: Option<Duration>,
    pub reply: Reply,
}

impl Handler<Fetch> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Fetch, ctx: &mut Context<Self>) {
        if self.retired {
            let _ = msg.reply.send(Err(QueueError::Gone));
            return;
        }
        self.tick(ctx);
        if self.state.is_open() && self.state.ready_len() > 0 {
            self.hand_out(msg.max, msg.lease, msg.reply, ctx);
        } else if let Some(wait) = msg.wait.filter(|w| !w.is_zero()) {
            self.park(msg.max, msg.lease, wait, msg.reply, ctx);
        } else {
            let _ = msg.reply.send(Err(self.refusal()));
        }
    }
}

/// Reads the queue's counters. Reads change nothing: due jobs are moved by the timer
/// (and by fetches), so what reads see proves the timer keeps time.
#[derive(Message)]
#[rtype(result = "QueueResult<Counters>")]
pub struct GetCounters;

impl Handler<GetCounters> for QueueActor {
    type Result = QueueResult<Counters>;

    fn handle(&mut self, _: GetCounters, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(self.state.counters())
    }
}

/// Reads what `/metrics` shows of the queue: its counters, its tally since the
/// process started and its parked fetches.
#[derive(Message)]
#[rtype(result = "QueueResult<QueueFigures>")]
pub struct GetFigures;

/// The answer to [`GetFigures`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueFigures {
    pub counters: Counters,
    pub tally: QueueTally,
    pub waiters: usize,
}

impl Handler<GetFigures> for QueueActor {
    type Result = QueueResult<QueueFigures>;

    fn handle(&mut self, _: GetFigures, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        self.forget_gone_waiters(ctx);
        Ok(QueueFigures {
            counters: self.state.counters(),
            tally: self.tally,
            waiters: self.waiters.len(),
        })
    }
}

/// Lists a page of the ready jobs' bodies in queue order (`/status/NAME?with_desc=1`):
/// at most `limit`, starting right after the job `after` names (a page's last job), or
/// at the head when `after` is `None` or that job is no longer ready.
#[derive(Message)]
#[rtype(result = "QueueResult<ReadyPage>")]
pub struct ListReady {
    pub after: Option<JobId>,
    pub limit: usize,
}

/// A page of ready jobs.
#[derive(Debug, Default)]
pub struct ReadyPage {
    pub bodies: Vec<Bytes>,
    /// The listed jobs' priorities, in the order of `bodies`.
    pub priorities: Vec<u8>,
    /// All the ready jobs, listed or not.
    pub size: usize,
    /// The last job listed, when more follow it.
    pub next: Option<JobId>,
}

impl Handler<ListReady> for QueueActor {
    type Result = QueueResult<ReadyPage>;

    fn handle(&mut self, msg: ListReady, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        // The job a cursor names is found by id, not by position: jobs taken from
        // the head between two pages would otherwise make the next page skip as many.
        // Jobs that stay ready keep their order, so "after it" is where the last page
        // ended; if it has left, everything before it has (the queue is FIFO) but for
        // jobs put back meanwhile, so the head is where to go on.
        let mut jobs = self.state.ready_jobs();
        let mut start = 0;
        if let Some(after) = msg.after {
            match jobs.by_ref().position(|job| job.id == after) {
                Some(at) => start = at + 1,
                None => jobs = self.state.ready_jobs(),
            }
        }
        let mut last = None;
        let (bodies, priorities): (Vec<Bytes>, Vec<u8>) = jobs
            .take(msg.limit)
            .map(|job| {
                last = Some(job.id);
                (job.body.clone(), job.priority)
            })
            .unzip();
        let size = self.state.ready_len();
        let next = last.filter(|_| start + bodies.len() < size);
        Ok(ReadyPage {
            bodies,
            priorities,
            size,
            next,
        })
    }
}

/// Whether a queue hands out jobs (`/control/NAME` start and stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetching {
    Open,
    Closed,
}

/// Opens or closes the queue for fetching; posting works either way.
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetOpen(pub Fetching);

impl Handler<SetOpen> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetOpen, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        let open = msg.0 == Fetching::Open;
        if self.state.is_open() == open {
            return answer(Ok(()));
        }
        match self.commit(Change::OpenSet(open), ctx) {
            Ok((_, durable)) => {
                self.serve_waiters(ctx);
                when_durable(durable, ())
            }
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Drops the queue and everything in it. The actor then answers every message with
/// [`QueueError::Gone`] (so a request that raced the delete retries on the queue's new
/// incarnation) and stops. Parked fetches get the usual empty answer.
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct Purge;

impl Handler<Purge> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, _: Purge, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        match self.commit(Change::Purged, ctx) {
            Ok((_, durable)) => {
                self.release_waiters(ctx);
                self.retired = true;
                ctx.stop();
                when_durable(durable, ())
            }
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Answers every parked fetch now (the server is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseWaiters;

impl Handler<ReleaseWaiters> for QueueActor {
    type Result = ();

    fn handle(&mut self, _: ReleaseWaiters, ctx: &mut Context<Self>) {
        self.release_waiters(ctx);
    }
}

/// Where a job is (`GET /q/NAME/ID`).
#[derive(Message)]
#[rtype(result = "QueueResult<JobInfo>")]
pub struct FindJob(pub JobId);

impl Handler<FindJob> for QueueActor {
    type Result = QueueResult<JobInfo>;

    fn handle(&mut self, msg: FindJob, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        self.state.find(msg.0).ok_or(QueueError::JobNotFound)
    }
}

/// A leased job is done (`DELETE /q/NAME/ID`), says the holder of delivery `0`.
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct Ack(pub DeliveryToken);

impl Handler<Ack> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: Ack, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if let Err(e) = self.check_held(msg.0) {
            return answer(Err(e));
        }
        match self.commit(Change::Acked { id: msg.0.job }, ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// A leased job failed (`PUT /q/NAME/ID`), says the holder of delivery `token`: it
/// goes back (or is delayed until `due_ms`), or to the dead letters; the report (the
/// worker, its reason) joins the job's last few. Answers where it went.
#[derive(Message)]
#[rtype(result = "QueueResult<JobInfo>")]
pub struct FailLease {
    pub token: DeliveryToken,
    /// The report's own retry time (`None` with `delay_named`: at once).
    pub due_ms: Option<u64>,
    /// Whether the report named its own `delay`/`delayed`; if not, the queue's
    /// retry backoff decides.
    pub delay_named: bool,
    pub worker: Option<Arc<str>>,
    pub error: Option<Arc<str>>,
}

impl Handler<FailLease> for QueueActor {
    type Result = ResponseFuture<QueueResult<JobInfo>>;

    fn handle(&mut self, msg: FailLease, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if let Err(e) = self.check_held(msg.token) {
            return answer(Err(e));
        }
        let now = now_ms();
        let id = msg.token.job;
        // Without a worker id on the report, the lease's holder reported it.
        let worker = msg
            .worker
            .or_else(|| self.state.lease(id).and_then(|l| l.worker.clone()));
        let due_ms = if msg.delay_named {
            msg.due_ms.filter(|due| *due > now)
        } else {
            let attempt = self.state.attempts(id).saturating_add(1);
            self.retry_due(attempt, now)
        };
        let change = Change::Failed {
            id,
            due_ms,
            max_attempts: self.max_attempts(),
            report: Some(FailureReport {
                at_ms: now,
                worker,
                error: msg.error,
            }),
        };
        match self.commit(change, ctx) {
            Ok((_, durable)) => {
                let info = self.state.find(id);
                self.serve_waiters(ctx);
                match info {
                    Some(info) => when_durable(durable, info),
                    None => answer(Err(QueueError::JobNotFound)),
                }
            }
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// A lease now runs `duration_ms` from now (`POST /q/NAME/ID?lease=S`), says the
/// holder of delivery `token`. The token stays the same.
#[derive(Message)]
#[rtype(result = "QueueResult<JobInfo>")]
pub struct Extend {
    pub token: DeliveryToken,
    pub duration_ms: u64,
}

impl Handler<Extend> for QueueActor {
    type Result = ResponseFuture<QueueResult<JobInfo>>;

    fn handle(&mut self, msg: Extend, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if let Err(e) = self.check_held(msg.token) {
            return answer(Err(e));
        }
        let id = msg.token.job;
        let change = Change::Extended {
            id,
            deadline_ms: now_ms().saturating_add(msg.duration_ms),
        };
        match self.commit(change, ctx) {
            Ok((_, durable)) => match self.state.find(id) {
                Some(info) => when_durable(durable, info),
                None => answer(Err(QueueError::JobNotFound)),
            },
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// One page of the queue's dead letters: up to `limit` with ids above `after`, oldest
/// id first, and whether more follow.
#[derive(Message)]
#[rtype(result = "QueueResult<(Vec<DeadLetter>, bool)>")]
pub struct ListDead {
    pub after: Option<JobId>,
    pub limit: usize,
}

impl Handler<ListDead> for QueueActor {
    type Result = QueueResult<(Vec<DeadLetter>, bool)>;

    fn handle(&mut self, msg: ListDead, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(self.state.dead_page(msg.after, msg.limit))
    }
}

/// What becomes of dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadAction {
    /// Back to the queue, attempts reset.
    Retry,
    /// Dropped.
    Purge,
}

/// Retries or purges dead jobs: one by id, or all. Answers how many.
#[derive(Message)]
#[rtype(result = "QueueResult<usize>")]
pub struct ResolveDead {
    pub id: Option<JobId>,
    pub action: DeadAction,
}

impl Handler<ResolveDead> for QueueActor {
    type Result = ResponseFuture<QueueResult<usize>>;

    fn handle(&mut self, msg: ResolveDead, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if !self.state.has_dead(msg.id) {
            return match msg.id {
                Some(_) => answer(Err(QueueError::JobNotFound)),
                None => answer(Ok(0)),
            };
        }
        let count = match msg.id {
            Some(_) => 1,
            None => self.state.counters().dead,
        };
        let change = match msg.action {
            DeadAction::Retry => Change::DeadRetried { id: msg.id },
            DeadAction::Purge => Change::DeadPurged { id: msg.id },
        };
        match self.commit(change, ctx) {
            Ok((_, durable)) => {
                self.serve_waiters(ctx);
                when_durable(durable, count)
            }
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// The queue's settings.
#[derive(Message)]
#[rtype(result = "QueueResult<QueueSettings>")]
pub struct GetSettings;

/// A queue's settings as `/settings/NAME` shows them: each its own value (`None`:
/// following the server's) and the value in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub own_max_attempts: Option<u32>,
    pub max_attempts: u32,
    pub own_max_jobs: Option<u64>,
    /// `None`: unlimited.
    pub max_jobs: Option<u64>,
    pub own_backoff: Option<Backoff>,
    pub backoff: Backoff,
    pub on_expiry: OnExpiry,
}

impl Handler<GetSettings> for QueueActor {
    type Result = QueueResult<QueueSettings>;

    fn handle(&mut self, _: GetSettings, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(QueueSettings {
            own_max_attempts: self.state.max_attempts(),
            max_attempts: self.max_attempts(),
            own_max_jobs: self.state.max_jobs(),
            max_jobs: self.max_jobs(),
            own_backoff: self.state.backoff(),
            backoff: self.backoff(),
            on_expiry: self.state.on_expiry(),
        })
    }
}

/// Sets what becomes of the queue's jobs whose ttl runs out.
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetOnExpiry(pub OnExpiry);

impl Handler<SetOnExpiry> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetOnExpiry, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        match self.commit(Change::OnExpirySet(msg.0), ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Sets the queue's own retry backoff (`None`: follow the server default).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetBackoff(pub Option<Backoff>);

impl Handler<SetBackoff> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetBackoff, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        match self.commit(Change::BackoffSet(msg.0), ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Sets the queue's own `max_jobs` (`None`: follow the server default).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetMaxJobs(pub Option<u64>);

impl Handler<SetMaxJobs> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetMaxJobs, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        match self.commit(Change::MaxJobsSet(msg.0), ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Sets the queue's own `max_attempts` (`None`: follow the server default).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetMaxAttempts(pub Option<u32>);

impl Handler<SetMaxAttempts> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetMaxAttempts, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        match self.commit(Change::MaxAttemptsSet(msg.0), ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// One lease as listed for the worker view: (job id, deadline, worker).
pub type LeaseEntry = (JobId, u64, Option<Arc<str>>);

/// Every lease the queue has out.
#[derive(Message)]
#[rtype(result = "QueueResult<Vec<LeaseEntry>>")]
pub struct ListLeases;

impl Handler<ListLeases> for QueueActor {
    type Result = QueueResult<Vec<LeaseEntry>>;

    fn handle(&mut self, _: ListLeases, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(self
            .state
            .leases()
            .map(|l| (l.job.id, l.deadline_ms, l.worker.clone()))
            .collect())
    }
}

/// What the dashboard's overview shows of a queue: its counters and how many fetches
/// are parked on it (consumers waiting for a job).
#[derive(Message)]
#[rtype(result = "QueueResult<Summary>")]
pub struct GetSummary;

/// A queue's counters and its parked fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub counters: Counters,
    pub waiting: usize,
}

impl Handler<GetSummary> for QueueActor {
    type Result = QueueResult<Summary>;

    fn handle(&mut self, _: GetSummary, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        self.forget_gone_waiters(ctx);
        Ok(Summary {
            counters: self.state.counters(),
            waiting: self.waiters.len(),
        })
    }
}

/// Which of a queue's waiting jobs [`ListJobs`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// In fetch order.
    Ready,
    /// By due time.
    Delayed,
    /// By job id.
    Leased,
}

/// A page of a queue's ready, delayed or leased jobs with what the queue knows of
/// each (`GET /jobs/NAME`): at most `limit`, starting right after job `after` (a
/// page's last), or at the start when `after` is `None` or no longer in that state.
#[derive(Message)]
#[rtype(result = "QueueResult<JobsPage>")]
pub struct ListJobs {
    pub which: Waiting,
    pub after: Option<JobId>,
    pub limit: usize,
}

/// One listed job.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub id: JobId,
    pub body: Bytes,
    pub priority: u8,
    pub attempts: u32,
    pub due_ms: Option<u64>,
    pub lease_deadline_ms: Option<u64>,
    pub worker: Option<Arc<str>>,
    pub failures: Arc<[FailureReport]>,
    /// Ready and delayed jobs with a ttl: when they expire.
    pub expires_ms: Option<u64>,
}

/// A page of jobs in one state.
#[derive(Debug, Default)]
pub struct JobsPage {
    pub jobs: Vec<JobEntry>,
    /// All the jobs in that state, listed or not.
    pub size: usize,
    /// The last job listed, when more follow it.
    pub next: Option<JobId>,
}

impl Handler<ListJobs> for QueueActor {
    type Result = QueueResult<JobsPage>;

    fn handle(&mut self, msg: ListJobs, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        let state = &self.state;
        let entry = |job: &Job| JobEntry {
            id: job.id,
            body: job.body.clone(),
            priority: job.priority,
            attempts: state.attempts(job.id),
            due_ms: None,
            lease_deadline_ms: None,
            worker: None,
            failures: state.failures(job.id),
            expires_ms: state.expires_ms(job.id),
        };
        let counters = state.counters();
        let (after, limit) = (msg.after, msg.limit);
        Ok(match msg.which {
            Waiting::Ready => jobs_page(
                || state.ready_jobs().map(&entry),
                after,
                limit,
                counters.ready,
            ),
            Waiting::Delayed => jobs_page(
                || {
                    state.delayed_jobs().map(|(due, job)| JobEntry {
                        due_ms: Some(due),
                        ..entry(job)
                    })
                },
                after,
                limit,
                counters.delayed,
            ),
            Waiting::Leased => jobs_page(
                || {
                    state.leases().map(|lease| JobEntry {
                        lease_deadline_ms: Some(lease.deadline_ms),
                        worker: lease.worker.clone(),
                        ..entry(&lease.job)
                    })
                },
                after,
                limit,
                counters.leased,
            ),
        })
    }
}

/// A page of the `size` jobs `all` lists. As in [`ListReady`], the cursor is found by
/// id, and when its job has left this state the listing starts again at the front.
fn jobs_page<I: Iterator<Item = JobEntry>>(
    all: impl Fn() -> I,
    after: Option<JobId>,
    limit: usize,
    size: usize,
) -> JobsPage {
    let mut listed = all();
    let mut start = 0;
    if let Some(after) = after {
        match listed.by_ref().position(|job| job.id == after) {
            Some(at) => start = at + 1,
            None => listed = all(),
        }
    }
    let jobs: Vec<JobEntry> = listed.take(limit).collect();
    let next = jobs
        .last()
        .map(|job| job.id)
        .filter(|_| start + jobs.len() < size);
    JobsPage { jobs, size, next }
}

/// A consistent image of the queue for a snapshot, taken in O(1), and how long the
/// actor spent on it (the queue's stall).
#[derive(Message)]
#[rtype(result = "Option<(QueueSnapshot, Duration)>")]
pub struct TakeImage;

impl Handler<TakeImage> for QueueActor {
    type Result = Option<(QueueSnapshot, Duration)>;

    fn handle(&mut self, _: TakeImage, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return None;
        }
        let start = Instant::now();
        let snapshot = QueueSnapshot {
            incarnation: self.incarnation,
            name: self.name.as_str().to_owned(),
            seq: self.seq,
            image: self.state.image(),
        };
        Some((snapshot, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::testing::{enqueue, fetch, job, start_queue};

    #[actix::test]
    async fn closed_and_empty_queues_refuse_fetches() {
        let (addr, _dir) = start_queue();
        assert_eq!(fetch(&addr, 1).await, Err(QueueError::Empty));
        enqueue(&addr, vec![job(1)], None).await;
        assert_eq!(
            addr.send(SetOpen(Fetching::Closed)).await.ok(),
            Some(Ok(()))
        );
        assert_eq!(fetch(&addr, 1).await, Err(QueueError::Closed));
    }

    #[actix::test]
    async fn a_purged_queue_answers_gone() {
        let (addr, _dir) = start_queue();
        enqueue(&addr, vec![job(1)], None).await;
        assert_eq!(addr.send(Purge).await.ok(), Some(Ok(())));
        let after = addr.send(GetCounters).await;
        assert!(matches!(after, Ok(Err(QueueError::Gone)) | Err(_)));
        assert_eq!(fetch(&addr, 1).await, Err(QueueError::Gone));
    }
}
