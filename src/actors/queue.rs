//! The queue actor: owns one [`QueueState`] and is the only thing that touches it.
//! Its messages sit next to their handlers.

use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::job::Job;
use crate::names::QueueName;
use crate::queue_state::{Change, Counters, QueueState};
use crate::storage::format::{LogRecordRef, QueueSnapshot};
use crate::storage::log::{Durable, Log};
use crate::storage::StorageError;

/// Mailbox capacity: well above actix' default of 16 so bursts of requests to one
/// queue do not make senders wait.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Why a queue refused or could not answer a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("no job")]
    Empty,
    #[error("queue is closed")]
    Closed,
    #[error("job already exists")]
    Duplicate,
    /// The queue was deleted after its address was looked up; look it up again.
    #[error("queue was deleted")]
    Gone,
    /// The change could not be logged, so it was not made (or not acknowledged).
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<StorageError> for QueueError {
    fn from(e: StorageError) -> Self {
        QueueError::Storage(e.to_string())
    }
}

/// The answer of a queue message.
pub type QueueResult<T> = Result<T, QueueError>;

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
    state: QueueState,
    /// Set by [`Purge`]: from then on every message answers [`QueueError::Gone`].
    retired: bool,
    /// The armed wake-up for the earliest delayed job, and the time it is for.
    timer: Option<(u64, SpawnHandle)>,
}

impl QueueActor {
    /// A new, empty queue.
    pub fn new(name: QueueName, incarnation: u64, log: Log) -> Self {
        QueueActor {
            name,
            incarnation,
            seq: 0,
            announced: false,
            log,
            state: QueueState::default(),
            retired: false,
            timer: None,
        }
    }

    /// A queue brought back by recovery.
    pub fn recovered(
        name: QueueName,
        incarnation: u64,
        seq: u64,
        state: QueueState,
        log: Log,
    ) -> Self {
        QueueActor {
            seq,
            announced: true,
            state,
            ..QueueActor::new(name, incarnation, log)
        }
    }

    /// The one place a queue actor changes its state: the change is logged, then
    /// applied. A change the log refuses is not applied.
    fn commit(
        &mut self,
        change: Change,
        ctx: &mut Context<Self>,
    ) -> Result<(Vec<Job>, Durable), StorageError> {
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

    /// Keeps exactly one timer armed, for the earliest delayed job, so a due job moves
    /// to the head on time without any periodic scan.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = self.state.next_due_ms();
        if self.timer.as_ref().map(|(due, _)| *due) == next {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(due) = next {
            let wait = Duration::from_millis(due.saturating_sub(now_ms()));
            let handle = ctx.run_later(wait, |actor, ctx| {
                actor.timer = None;
                actor.promote_due(ctx);
                actor.arm_timer(ctx);
            });
            self.timer = Some((due, handle));
        }
    }

    /// Moves every due delayed job to the head.
    fn promote_due(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        if self.state.has_due(now) {
            if let Err(e) = self.commit(Change::Promoted { now_ms: now }, ctx) {
                tracing::error!(queue = %self.name, error = %e, "cannot promote due jobs");
            }
        }
    }

    /// Hands jobs to a fetcher; if it has gone, they go back to the head.
    fn deliver(
        &mut self,
        jobs: Vec<Job>,
        reply: oneshot::Sender<QueueResult<Vec<Job>>>,
        ctx: &mut Context<Self>,
    ) {
        if let Err(Ok(jobs)) = reply.send(Ok(jobs)) {
            tracing::debug!(queue = %self.name, jobs = jobs.len(), "fetching client left; jobs go back to the head");
            self.give_back(jobs, ctx);
        }
    }

    fn give_back(&mut self, jobs: Vec<Job>, ctx: &mut Context<Self>) {
        if let Err(e) = self.commit(Change::Returned { jobs }, ctx) {
            tracing::error!(queue = %self.name, error = %e, "cannot return undelivered jobs to the queue");
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
        // A recovered queue may hold jobs that came due while the server was down.
        self.promote_due(ctx);
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
        if msg.failed {
            if let Err(e) = self.commit(Change::FailureCounted, ctx) {
                return answer(Err(e.into()));
            }
        }
        let due_ms = msg.due_ms.filter(|due| *due > now_ms());
        match self.commit(
            Change::Enqueued {
                jobs: msg.jobs,
                due_ms,
            },
            ctx,
        ) {
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Takes up to `max` jobs from the head. The reply travels on the caller's own channel:
/// if the caller has gone by the time the jobs are ready (and, under `fsync =
/// "always"`, durably taken), the send fails and the jobs go back to the head instead
/// of vanishing with a discarded actix reply.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fetch {
    pub max: usize,
    pub reply: oneshot::Sender<QueueResult<Vec<Job>>>,
}

impl Handler<Fetch> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Fetch, ctx: &mut Context<Self>) {
        let refusal = if self.retired {
            Some(QueueError::Gone)
        } else {
            self.promote_due(ctx);
            if !self.state.is_open() {
                Some(QueueError::Closed)
            } else if self.state.ready_len() == 0 {
                Some(QueueError::Empty)
            } else {
                None
            }
        };
        if let Some(refusal) = refusal {
            let _ = msg.reply.send(Err(refusal));
            return;
        }
        match self.commit(Change::Taken { count: msg.max }, ctx) {
            Err(e) => {
                let _ = msg.reply.send(Err(e.into()));
            }
            Ok((jobs, Durable::Now)) => self.deliver(jobs, msg.reply, ctx),
            Ok((jobs, durable)) => {
                let reply = msg.reply;
                ctx.spawn(durable.wait().into_actor(self).map(
                    move |synced, actor, ctx| match synced {
                        Ok(()) => actor.deliver(jobs, reply, ctx),
                        Err(e) => {
                            actor.give_back(jobs, ctx);
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                ));
            }
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
            Ok((_, durable)) => when_durable(durable, ()),
            Err(e) => answer(Err(e.into())),
        }
    }
}

/// Drops the queue and everything in it. The actor then answers every message with
/// [`QueueError::Gone`] (so a request that raced the delete retries on the queue's new
/// incarnation) and stops.
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
                self.retired = true;
                ctx.stop();
                when_durable(durable, ())
            }
            Err(e) => answer(Err(e.into())),
        }
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
    use crate::job::JobId;
    use crate::storage::log::FsyncPolicy;

    /// A queue actor logging to a throw-away directory (kept alive by the guard).
    fn start_queue() -> (Addr<QueueActor>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
        let name = QueueName::parse("q").expect("name");
        (QueueActor::new(name, 1, log).start(), dir)
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
        if addr.send(Fetch { max, reply }).await.is_err() {
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
        assert!(addr.send(Fetch { max: 2, reply }).await.is_ok());
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
    async fn the_timer_promotes_a_due_job_within_50ms() {
        let (addr, _dir) = start_queue();
        let due = now_ms() + 200;
        enqueue(&addr, vec![job(1)], Some(due)).await;
        loop {
            let c = addr.send(GetCounters).await.ok().and_then(Result::ok);
            let ready = c.map_or(0, |c| c.ready);
            let now = now_ms();
            if ready == 1 {
                assert!(now >= due, "promoted {} ms early", due - now);
                assert!(now <= due + 50, "promoted {} ms late", now - due);
                break;
            }
            assert!(now <= due + 50, "not promoted {} ms after due", now - due);
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
