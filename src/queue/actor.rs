//! The queue actor: owns one [`QueueState`] and is the only thing that touches it.
//! It also owns the queue's timer (delayed jobs coming due, leases running out) and
//! its parked long-poll fetches. Its messages sit next to their handlers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::names::QueueName;
use crate::queue::job::{Job, JobId};
use crate::queue::state::{Change, Counters, DeadJob, JobInfo, QueueState};
use crate::storage::format::{LogRecordRef, QueueSnapshot};
use crate::storage::log::{Durable, Log};
use crate::storage::StorageError;

/// How long a queue's timer waits before trying again a change the log refused.
const REFUSED_BACKOFF_MS: u64 = 100;

/// Mailbox capacity: well above actix' default of 16 so bursts of requests to one
/// queue do not make senders wait.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Most leases one turn of the actor expires. The queue shares its thread with HTTP
/// requests, so a storm of expiries is worked off in bounded steps with the thread
/// handed back in between (see `arm_timer`); this many take about half a millisecond
/// in a release build (BENCHMARKS.md, "Lease storm").
pub const EXPIRY_BATCH: usize = 1024;

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
    #[error("job is not leased")]
    NotLeased,
    #[error("too many requests are waiting on this queue (limit {0})")]
    TooManyWaiters(usize),
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

/// Server-wide settings every queue follows.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// `max_attempts` for queues that have not set their own.
    pub default_max_attempts: u32,
    /// Parked fetches allowed per queue.
    pub max_waiters: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            default_max_attempts: 5,
            max_waiters: 1024,
        }
    }
}

/// A lease asked for by a fetch.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub duration_ms: u64,
    pub worker: Option<Arc<str>>,
}

type Reply = oneshot::Sender<QueueResult<Vec<Job>>>;

/// A parked fetch.
struct Waiter {
    id: u64,
    max: usize,
    lease: Option<LeaseRequest>,
    reply: Reply,
    timeout: SpawnHandle,
}

/// One queue's actor.
pub struct QueueActor {
    name: QueueName,
    /// This incarnation of the queue (a deleted and re-created queue is a new one).
    incarnation: u64,
    /// Number of the last change logged.
    seq: u64,
    /// Whether the log has been told this incarnation exists.
    announced: bool,
    log: Log,
    config: QueueConfig,
    state: QueueState,
    /// Set by [`Purge`]: from then on every message answers [`QueueError::Gone`].
    retired: bool,
    /// The armed wake-up for the earliest delayed job or lease deadline.
    timer: Option<(u64, SpawnHandle)>,
    /// Parked fetches, oldest first.
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
    /// Set while the log refuses the changes the timer makes: not before then.
    refused_until: Option<u64>,
}

impl QueueActor {
    /// A new, empty queue.
    pub fn new(name: QueueName, incarnation: u64, log: Log, config: QueueConfig) -> Self {
        QueueActor {
            name,
            incarnation,
            seq: 0,
            announced: false,
            log,
            config,
            state: QueueState::default(),
            retired: false,
            timer: None,
            waiters: VecDeque::new(),
            next_waiter: 0,
            refused_until: None,
        }
    }

    /// A queue brought back by recovery.
    pub fn recovered(
        name: QueueName,
        incarnation: u64,
        seq: u64,
        state: QueueState,
        log: Log,
        config: QueueConfig,
    ) -> Self {
        QueueActor {
            seq,
            announced: true,
            state,
            ..QueueActor::new(name, incarnation, log, config)
        }
    }

    fn max_attempts(&self) -> u32 {
        self.state
            .max_attempts()
            .unwrap_or(self.config.default_max_attempts)
    }

    /// The one place a queue actor changes its state: the change is logged, then
    /// applied. A change the log refuses is not applied.
    fn commit(
        &mut self,
        change: Change,
        ctx: &mut Context<Self>,
    ) -> Result<(Vec<Job>, Durable), StorageError> {
        // Refused up front, so a change never half-happens (its queue announced but
        // not the change itself).
        self.log.check()?;
        if !self.announced {
            self.log.append(&LogRecordRef::QueueCreated {
                queue: self.incarnation,
                name: self.name.as_str(),
            })?;
            self.announced = true;
        }
        let seq = self.seq + 1;
        let durable = self.log.append(&LogRecordRef::Queue {
            queue: self.incarnation,
            seq,
            change: &change,
        })?;
        self.seq = seq;
        let out = self.state.apply(change);
        self.arm_timer(ctx);
        Ok((out, durable))
    }

    /// A change the actor makes on its own (timers, give-backs). While the log
    /// refuses changes, the timer backs off instead of firing again at once for the
    /// same due work, and the refusal is logged once, not at every try.
    fn commit_quietly(&mut self, change: Change, ctx: &mut Context<Self>) {
        match self.commit(change, ctx) {
            Ok(_) => {
                if self.refused_until.take().is_some() {
                    tracing::info!(queue = %self.name, "the log takes this queue's changes again");
                }
            }
            Err(e) => {
                if self.refused_until.is_none() {
                    tracing::error!(queue = %self.name, error = %e, "cannot record a change; retrying while the log refuses");
                }
                self.refused_until = Some(now_ms() + REFUSED_BACKOFF_MS);
                self.arm_timer(ctx);
            }
        }
    }

    /// Keeps exactly one timer armed, for the earliest delayed job or lease deadline,
    /// so jobs move on time without any periodic scan.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = match (self.state.next_due_ms(), self.state.next_deadline_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let next = match (next, self.refused_until) {
            (Some(at), Some(backoff)) => Some(at.max(backoff)),
            (next, _) => next,
        };
        if self.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = next {
            let wait = Duration::from_millis(at.saturating_sub(now_ms()));
            // Work left over from a bounded step (more expired leases) is due at once.
            // A zero-length timer can fire within the same turn of the thread, which
            // would run every step back to back; yielding first lets the requests
            // waiting on this thread through between steps.
            let fire = async move {
                if wait.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(wait).await;
                }
            };
            let handle = ctx.spawn(fire.into_actor(self).map(|(), actor, ctx| {
                actor.timer = None;
                actor.tick(ctx);
                actor.arm_timer(ctx);
            }));
            self.timer = Some((at, handle));
        }
    }

    /// Moves due delayed jobs to the head and expired leases back (at most
    /// [`EXPIRY_BATCH`]; the timer comes back at once for the rest), then serves
    /// waiters.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        if self.state.has_due(now) {
            let change = Change::Promoted {
                now_ms: now,
                limit: Some(EXPIRY_BATCH),
            };
            self.commit_quietly(change, ctx);
        }
        if self.state.has_expired(now) {
            let max_attempts = self.max_attempts();
            self.commit_quietly(
                Change::LeasesExpired {
                    now_ms: now,
                    max_attempts,
                    limit: Some(EXPIRY_BATCH),
                },
                ctx,
            );
        }
        self.serve_waiters(ctx);
    }

    /// Hands ready jobs to parked fetches, oldest first.
    fn serve_waiters(&mut self, ctx: &mut Context<Self>) {
        while self.state.is_open() && self.state.ready_len() > 0 {
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            ctx.cancel_future(waiter.timeout);
            // A waiter whose client has gone never takes a job.
            if !waiter.reply.is_closed() {
                self.hand_out(waiter.max, waiter.lease, waiter.reply, ctx);
            }
        }
    }

    /// Takes (or leases) up to `max` jobs for a fetcher and delivers them once the
    /// change is durable as the fsync policy requires.
    fn hand_out(
        &mut self,
        max: usize,
        lease: Option<LeaseRequest>,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let leased = lease.is_some();
        let change = match lease {
            None => Change::Taken { count: max },
            Some(lease) => Change::Leased {
                count: max,
                deadline_ms: now_ms().saturating_add(lease.duration_ms),
                worker: lease.worker,
            },
        };
        match self.commit(change, ctx) {
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
            Ok((jobs, Durable::Now)) => self.deliver(jobs, leased, reply, ctx),
            Ok((jobs, durable)) => {
                ctx.spawn(durable.wait().into_actor(self).map(
                    move |synced, actor, ctx| match synced {
                        Ok(()) => actor.deliver(jobs, leased, reply, ctx),
                        Err(e) => {
                            actor.give_back(jobs, leased, ctx);
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                ));
            }
        }
    }

    /// Sends jobs to their fetcher; if it has gone, they go back where they were.
    fn deliver(&mut self, jobs: Vec<Job>, leased: bool, reply: Reply, ctx: &mut Context<Self>) {
        if let Err(Ok(jobs)) = reply.send(Ok(jobs)) {
            tracing::debug!(queue = %self.name, jobs = jobs.len(), "fetching client left; jobs go back");
            self.give_back(jobs, leased, ctx);
            self.serve_waiters(ctx);
        }
    }

    fn give_back(&mut self, jobs: Vec<Job>, leased: bool, ctx: &mut Context<Self>) {
        let change = if leased {
            Change::LeaseReleased {
                ids: jobs.iter().map(|j| j.id).collect(),
            }
        } else {
            Change::Returned { jobs }
        };
        self.commit_quietly(change, ctx);
    }

    /// Parks a fetch for up to `wait`.
    fn park(
        &mut self,
        max: usize,
        lease: Option<LeaseRequest>,
        wait: Duration,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        // Waiters whose clients left count for nothing.
        let mut gone = Vec::new();
        self.waiters.retain(|w| {
            let alive = !w.reply.is_closed();
            if !alive {
                gone.push(w.timeout);
            }
            alive
        });
        for handle in gone {
            ctx.cancel_future(handle);
        }
        if self.waiters.len() >= self.config.max_waiters {
            let _ = reply.send(Err(QueueError::TooManyWaiters(self.config.max_waiters)));
            return;
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        let timeout = ctx.run_later(wait, move |actor, _| actor.time_out(id));
        self.waiters.push_back(Waiter {
            id,
            max,
            lease,
            reply,
            timeout,
        });
    }

    /// A parked fetch waited its full time: the usual answer for an empty (or closed)
    /// queue.
    fn time_out(&mut self, id: u64) {
        if let Some(at) = self.waiters.iter().position(|w| w.id == id) {
            if let Some(waiter) = self.waiters.remove(at) {
                let _ = waiter.reply.send(Err(self.refusal()));
            }
        }
    }

    fn refusal(&self) -> QueueError {
        if self.state.is_open() {
            QueueError::Empty
        } else {
            QueueError::Closed
        }
    }

    /// Answers every parked fetch with the usual empty answer (deletion, shutdown).
    fn release_waiters(&mut self, ctx: &mut Context<Self>) {
        let refusal = self.refusal();
        for waiter in self.waiters.drain(..) {
            ctx.cancel_future(waiter.timeout);
            let _ = waiter.reply.send(Err(refusal.clone()));
        }
    }

    /// Why `id` cannot be acted on as a lease.
    fn not_leased(&self, id: JobId) -> QueueError {
        if self.state.find(id).is_some() {
            QueueError::NotLeased
        } else {
            QueueError::JobNotFound
        }
    }
}

/// A handler answer that waits until its change is durable (under `fsync = "always"`;
/// otherwise it is ready at once).
fn when_durable<T: 'static>(durable: Durable, value: T) -> ResponseFuture<QueueResult<T>> {
    Box::pin(async move {
        durable.wait().await?;
        Ok(value)
    })
}

fn answer<T: 'static>(result: QueueResult<T>) -> ResponseFuture<QueueResult<T>> {
    Box::pin(std::future::ready(result))
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // A recovered queue may hold jobs that came due, or leases that ran out, while
        // the server was down.
        self.tick(ctx);
        self.arm_timer(ctx);
    }
}

/// Adds jobs (POST, PUT and batch POST).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct Enqueue {
    pub jobs: Vec<Job>,
    /// Epoch milliseconds before which the jobs may not be fetched.
    pub due_ms: Option<u64>,
    /// A worker's failure report (PUT): count one failed job as well.
    pub failed: bool,
}

impl Handler<Enqueue> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        let mut seen = std::collections::HashSet::new();
        for job in &msg.jobs {
            if let Some(key) = &job.uniq {
                if self.state.holds_uniq(key) || !seen.insert(key.clone()) {
                    return answer(Err(QueueError::Duplicate));
                }
            }
        }
        let due_ms = msg.due_ms.filter(|due| *due > now_ms());
        let committed = self.commit(
            Change::Enqueued {
                jobs: msg.jobs,
                due_ms,
            },
            ctx,
        );
        match committed {
            Ok((_, durable)) => {
                // After the jobs, not before: if the log refuses the jobs, nothing at
                // all has changed; if it then refuses only the count (the disk filled
                // in between), the jobs are safe and one failure goes uncounted.
                if msg.failed {
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

/// Lists the ready jobs' bodies in queue order (`/status/NAME?with_desc=1`).
#[derive(Message)]
#[rtype(result = "QueueResult<Vec<Bytes>>")]
pub struct ListReady;

impl Handler<ListReady> for QueueActor {
    type Result = QueueResult<Vec<Bytes>>;

    fn handle(&mut self, _: ListReady, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(self.state.ready_bodies())
    }
}

/// Opens (`true`) or closes (`false`) the queue for fetching.
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct SetOpen(pub bool);

impl Handler<SetOpen> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: SetOpen, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if self.state.is_open() == msg.0 {
            return answer(Ok(()));
        }
        match self.commit(Change::OpenSet(msg.0), ctx) {
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

/// A leased job is done (`DELETE /q/NAME/ID`).
#[derive(Message)]
#[rtype(result = "QueueResult<()>")]
pub struct Ack(pub JobId);

impl Handler<Ack> for QueueActor {
    type Result = ResponseFuture<QueueResult<()>>;

    fn handle(&mut self, msg: Ack, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if self.state.lease(msg.0).is_none() {
            return answer(Err(self.not_leased(msg.0)));
        }
        match self.commit(Change::Acked { id: msg.0 }, ctx) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// A leased job failed (`PUT /q/NAME/ID`): it goes back (or is delayed until
/// `due_ms`), or to the dead letters. Answers where it went.
#[derive(Message)]
#[rtype(result = "QueueResult<JobInfo>")]
pub struct FailLease {
    pub id: JobId,
    pub due_ms: Option<u64>,
}

impl Handler<FailLease> for QueueActor {
    type Result = ResponseFuture<QueueResult<JobInfo>>;

    fn handle(&mut self, msg: FailLease, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if self.state.lease(msg.id).is_none() {
            return answer(Err(self.not_leased(msg.id)));
        }
        let change = Change::Failed {
            id: msg.id,
            due_ms: msg.due_ms.filter(|due| *due > now_ms()),
            max_attempts: self.max_attempts(),
        };
        match self.commit(change, ctx) {
            Ok((_, durable)) => {
                let info = self.state.find(msg.id);
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

/// A lease now runs `duration_ms` from now (`POST /q/NAME/ID?lease=S`).
#[derive(Message)]
#[rtype(result = "QueueResult<JobInfo>")]
pub struct Extend {
    pub id: JobId,
    pub duration_ms: u64,
}

impl Handler<Extend> for QueueActor {
    type Result = ResponseFuture<QueueResult<JobInfo>>;

    fn handle(&mut self, msg: Extend, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return answer(Err(QueueError::Gone));
        }
        if self.state.lease(msg.id).is_none() {
            return answer(Err(self.not_leased(msg.id)));
        }
        let change = Change::Extended {
            id: msg.id,
            deadline_ms: now_ms().saturating_add(msg.duration_ms),
        };
        match self.commit(change, ctx) {
            Ok((_, durable)) => match self.state.find(msg.id) {
                Some(info) => when_durable(durable, info),
                None => answer(Err(QueueError::JobNotFound)),
            },
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// The queue's dead letters.
#[derive(Message)]
#[rtype(result = "QueueResult<Vec<DeadJob>>")]
pub struct ListDead;

impl Handler<ListDead> for QueueActor {
    type Result = QueueResult<Vec<DeadJob>>;

    fn handle(&mut self, _: ListDead, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok(self.state.dead().cloned().collect())
    }
}

/// Retries (`retry: true`) or purges dead jobs: one by id, or all. Answers how many.
#[derive(Message)]
#[rtype(result = "QueueResult<usize>")]
pub struct ResolveDead {
    pub id: Option<JobId>,
    pub retry: bool,
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
        let change = if msg.retry {
            Change::DeadRetried { id: msg.id }
        } else {
            Change::DeadPurged { id: msg.id }
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

/// The queue's settings: (own `max_attempts` if set, effective `max_attempts`).
#[derive(Message)]
#[rtype(result = "QueueResult<(Option<u32>, u32)>")]
pub struct GetSettings;

impl Handler<GetSettings> for QueueActor {
    type Result = QueueResult<(Option<u32>, u32)>;

    fn handle(&mut self, _: GetSettings, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(QueueError::Gone);
        }
        Ok((self.state.max_attempts(), self.max_attempts()))
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
    use crate::queue::job::JobId;
    use crate::storage::log::FsyncPolicy;

    /// A queue actor logging to a throw-away directory (kept alive by the guard).
    fn start_queue() -> (Addr<QueueActor>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
        let name = QueueName::parse("q").expect("name");
        (
            QueueActor::new(name, 1, log, QueueConfig::default()).start(),
            dir,
        )
    }

    fn job(id: u64) -> Job {
        Job {
            id: JobId(id),
            body: Bytes::from(id.to_string()),
            uniq: Some(format!("k{id}").into()),
        }
    }

    async fn enqueue(addr: &Addr<QueueActor>, jobs: Vec<Job>, due_ms: Option<u64>) {
        let sent = addr
            .send(Enqueue {
                jobs,
                due_ms,
                failed: false,
            })
            .await;
        assert_eq!(sent.ok(), Some(Ok(())));
    }

    async fn fetch(addr: &Addr<QueueActor>, max: usize) -> QueueResult<Vec<Job>> {
        let (reply, answer) = oneshot::channel();
        let fetch = Fetch {
            max,
            lease: None,
            wait: None,
            reply,
        };
        if addr.send(fetch).await.is_err() {
            return Err(QueueError::Gone);
        }
        answer.await.unwrap_or(Err(QueueError::Gone))
    }

    #[actix::test]
    async fn a_fetch_whose_caller_left_puts_the_jobs_back_at_the_head() {
        let (addr, _dir) = start_queue();
        enqueue(&addr, vec![job(1), job(2), job(3)], None).await;
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let abandoned = Fetch {
            max: 2,
            lease: None,
            wait: None,
            reply,
        };
        assert!(addr.send(abandoned).await.is_ok());
        let counters = addr.send(GetCounters).await.ok().and_then(Result::ok);
        assert_eq!(counters.map(|c| (c.ready, c.processed)), Some((3, 0)));
        // The returned job still holds its uniq key.
        let dup = addr
            .send(Enqueue {
                jobs: vec![job(1)],
                due_ms: None,
                failed: false,
            })
            .await;
        assert_eq!(dup.ok(), Some(Err(QueueError::Duplicate)));
        let ids: Vec<u64> = fetch(&addr, 3)
            .await
            .unwrap_or_default()
            .iter()
            .map(|j| j.id.0)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[actix::test]
    async fn the_timer_promotes_a_due_job_on_its_own_never_early() {
        let (addr, _dir) = start_queue();
        let due = now_ms() + 200;
        enqueue(&addr, vec![job(1)], Some(due)).await;
        loop {
            let c = addr.send(GetCounters).await.ok().and_then(Result::ok);
            let ready = c.map_or(0, |c| c.ready);
            let now = now_ms();
            if ready == 1 {
                assert!(now >= due, "promoted {} ms early", due - now);
                break;
            }
            // Generous: how late is a benchmark's business (bench/handoff.rs); this
            // proves the timer fires with nothing but reads going on.
            assert!(
                now <= due + 1_000,
                "not promoted {} ms after due",
                now - due
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[actix::test]
    async fn an_earlier_job_rearms_the_timer() {
        let (addr, _dir) = start_queue();
        enqueue(&addr, vec![job(1)], Some(now_ms() + 60_000)).await;
        let due = now_ms() + 100;
        enqueue(&addr, vec![job(2)], Some(due)).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let c = addr.send(GetCounters).await.ok().and_then(Result::ok);
        assert_eq!(c.map(|c| (c.ready, c.delayed)), Some((1, 1)));
    }

    #[actix::test]
    async fn closed_and_empty_queues_refuse_fetches() {
        let (addr, _dir) = start_queue();
        assert_eq!(fetch(&addr, 1).await, Err(QueueError::Empty));
        enqueue(&addr, vec![job(1)], None).await;
        assert_eq!(addr.send(SetOpen(false)).await.ok(), Some(Ok(())));
        assert_eq!(fetch(&addr, 1).await, Err(QueueError::Closed));
    }

    /// Expired leases come back in steps of at most [`EXPIRY_BATCH`], and messages
    /// sent meanwhile are answered between the steps, not after the whole storm. (The
    /// test's own future is polled less often than a spawned task, such as an HTTP
    /// connection, so it may see two steps at a time.)
    #[actix::test]
    async fn a_storm_of_expiries_is_worked_off_in_steps_between_other_messages() {
        let (addr, _dir) = start_queue();
        let n = 8 * EXPIRY_BATCH + 10;
        enqueue(&addr, (1..=n as u64).map(job).collect(), None).await;
        let (reply, answer) = oneshot::channel();
        let lease = Fetch {
            max: n,
            lease: Some(LeaseRequest {
                duration_ms: 50,
                worker: None,
            }),
            wait: None,
            reply,
        };
        assert!(addr.send(lease).await.is_ok());
        let leased = answer.await.ok().and_then(Result::ok).unwrap_or_default();
        assert_eq!(leased.len(), n);
        // Ask all along, from before the leases run out until they are all back.
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let c = addr.send(GetCounters).await.ok().and_then(Result::ok);
            let ready = c.map_or(0, |c| c.ready);
            seen.push(ready);
            if ready == n {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never all back: {:?}",
                seen.last()
            );
            tokio::task::yield_now().await;
        }
        let between: Vec<usize> = seen.iter().copied().filter(|&r| r > 0 && r < n).collect();
        assert!(
            between.len() >= 2,
            "answered only around the storm: {seen:?}"
        );
        assert!(between.iter().all(|r| r % EXPIRY_BATCH == 0), "{seen:?}");
        let ids: Vec<u64> = fetch(&addr, n)
            .await
            .unwrap_or_default()
            .iter()
            .map(|j| j.id.0)
            .collect();
        assert_eq!(ids, (1..=n as u64).collect::<Vec<_>>());
    }

    /// CPU time this thread has used, in milliseconds.
    fn thread_cpu_ms() -> u64 {
        // SAFETY: getrusage fills the struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
            usage
        };
        let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        ms(usage.ru_utime) + ms(usage.ru_stime)
    }

    /// While the log refuses changes, a lease that ran out cannot be put back: the
    /// timer must back off, not fire again at once for ever.
    #[actix::test]
    async fn an_expired_lease_does_not_spin_the_thread_while_the_log_refuses() {
        let (addr, dir) = start_queue();
        enqueue(&addr, vec![job(1)], None).await;
        let (reply, answer) = oneshot::channel();
        let lease = Fetch {
            max: 1,
            lease: Some(LeaseRequest {
                duration_ms: 300,
                worker: None,
            }),
            wait: None,
            reply,
        };
        assert!(addr.send(lease).await.is_ok());
        let leased = answer.await.ok().and_then(Result::ok).map(|j| j.len());
        assert_eq!(leased, Some(1));
        // The log breaks (its segment deleted: noticed within 100 ms).
        let segment = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("log-"))
            .expect("a segment");
        std::fs::remove_file(segment.path()).expect("remove");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = thread_cpu_ms();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = thread_cpu_ms() - before;
        assert!(
            used < 100,
            "the queue's thread used {used} ms of CPU in 1 s"
        );
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
