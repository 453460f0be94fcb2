//! The queue actor: owns one [`QueueState`] and is the only thing that touches it.
//!
//! Here are the actor itself, the one door its changes go through
//! ([`QueueActor::commit`]: logged, then applied) and its timer, which moves delayed
//! jobs that came due and leases that ran out. Around it, as further `impl QueueActor`
//! blocks: its messages with their handlers ([`messages`](super::messages)), handing
//! jobs to a fetcher ([`delivery`](super::delivery)) and parked long-poll fetches
//! ([`waiters`](super::waiters)).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::names::QueueName;
use crate::queue::backoff::{Backoff, Dice};
use crate::queue::budget::MemoryBudget;
use crate::queue::job::Job;
use crate::queue::leasing::LeasingQueues;
use crate::queue::state::{Change, Counters, QueueState};
use crate::queue::totals::{ChangeKind, QueueTally, QueueTotals};
use crate::queue::waiters::Waiter;
use crate::storage::format::LogRecordRef;
use crate::storage::log::{Durable, Log};
use crate::storage::StorageError;

// `directory.rs` imports these from here; they live in their own modules now.

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

/// Server-wide settings every queue follows.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `max_attempts` for queues that have not set their own.
    pub default_max_attempts: u32,
    /// Parked fetches allowed per queue.
    pub max_waiters: usize,
    /// `max_jobs` for queues that have not set their own (`None`: unlimited).
    pub default_max_jobs: Option<u64>,
    /// The memory budget every queue's jobs count against.
    pub budget: MemoryBudget,
    /// The queues holding leases, for the worker view.
    pub leasing: LeasingQueues,
    /// Sums over every queue, for `/metrics`.
    pub totals: QueueTotals,
    /// The retry backoff for queues that have not set their own.
    pub default_backoff: Backoff,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            default_max_attempts: 5,
            max_waiters: 1024,
            default_max_jobs: None,
            budget: MemoryBudget::unlimited(),
            leasing: LeasingQueues::default(),
            totals: QueueTotals::default(),
            default_backoff: Backoff::None,
        }
    }
}

/// One queue's actor.
pub struct QueueActor {
    pub(super) name: QueueName,
    /// This incarnation of the queue (a deleted and re-created queue is a new one).
    pub(super) incarnation: u64,
    /// Number of the last change logged.
    pub(super) seq: u64,
    /// Whether the log has been told this incarnation exists.
    announced: bool,
    /// Whether this queue is listed in [`QueueConfig::leasing`].
    listed_leasing: bool,
    log: Log,
    pub(super) config: QueueConfig,
    pub(super) state: QueueState,
    /// What the state does not count (enqueued, expired), since the process started.
    pub(super) tally: QueueTally,
    /// Set by [`Purge`](super::messages::Purge): from then on every message answers
    /// [`QueueError::Gone`](super::QueueError::Gone).
    pub(super) retired: bool,
    /// The armed wake-up for the earliest delayed job, lease deadline or ttl.
    timer: Option<(u64, SpawnHandle)>,
    /// Parked fetches, oldest first.
    pub(super) waiters: VecDeque<Waiter>,
    pub(super) next_waiter: u64,
    /// Set while the log refuses the changes the timer makes: not before then.
    refused_until: Option<u64>,
    /// The server's "shutting down" flag, shared by every queue and the directory:
    /// once set, no fetch parks here.
    stopping: Arc<AtomicBool>,
    /// Jitter for the retry backoff.
    dice: Dice,
}

impl QueueActor {
    /// A new, empty queue.
    pub fn new(name: QueueName, incarnation: u64, log: Log, config: QueueConfig) -> Self {
        QueueActor {
            name,
            incarnation,
            seq: 0,
            announced: false,
            listed_leasing: false,
            log,
            config,
            state: QueueState::default(),
            tally: QueueTally::default(),
            retired: false,
            timer: None,
            waiters: VecDeque::new(),
            next_waiter: 0,
            refused_until: None,
            stopping: Arc::new(AtomicBool::new(false)),
            dice: Dice::default(),
        }
    }

    /// The same queue, following the server's shutdown flag `stopping`.
    pub(super) fn stopping_with(mut self, stopping: Arc<AtomicBool>) -> Self {
        self.stopping = stopping;
        self
    }

    /// Whether the server is shutting down.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
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
            listed_leasing: false,
            state,
            ..QueueActor::new(name, incarnation, log, config)
        }
    }

    /// The queue's own `max_attempts`, else the server's.
    pub(super) fn max_attempts(&self) -> u32 {
        self.state
            .max_attempts()
            .unwrap_or(self.config.default_max_attempts)
    }

    /// The queue's own retry backoff, else the server's.
    pub(super) fn backoff(&self) -> Backoff {
        self.state.backoff().unwrap_or(self.config.default_backoff)
    }

    /// When a job whose deliveries have now failed `attempt` times is due again, at
    /// `now_ms`, under the queue's backoff (`None`: at once). Jitter is rolled here,
    /// once; the change records the result.
    pub(super) fn retry_due(&mut self, attempt: u32, now_ms: u64) -> Option<u64> {
        let backoff = self.backoff();
        if backoff == Backoff::None {
            return None;
        }
        let unit = self.dice.unit();
        backoff
            .delay_ms(attempt, unit)
            .map(|delay| now_ms.saturating_add(delay))
    }

    /// The queue's own `max_jobs`, else the server's (`None`: unlimited).
    pub(super) fn max_jobs(&self) -> Option<u64> {
        self.state.max_jobs().or(self.config.default_max_jobs)
    }

    /// The one place a queue actor changes its state: the change is logged, then
    /// applied. A change the log refuses is not applied.
    pub(super) fn commit(
        &mut self,
        change: Change,
        ctx: &mut Context<Self>,
    ) -> Result<(Vec<Job>, Durable), StorageError> {
        self.commit_as(change, true, ctx)
    }

    /// [`Self::commit`] for a change nobody waits to be durable (see
    /// [`Log::append_unawaited`]): the answer is always [`Durable::Now`].
    pub(super) fn commit_unawaited(
        &mut self,
        change: Change,
        ctx: &mut Context<Self>,
    ) -> Result<Vec<Job>, StorageError> {
        self.commit_as(change, false, ctx).map(|(jobs, _)| jobs)
    }

    fn commit_as(
        &mut self,
        change: Change,
        awaited: bool,
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
        let record = LogRecordRef::Queue {
            queue: self.incarnation,
            seq,
            change: &change,
        };
        let durable = if awaited {
            self.log.append(&record)?
        } else {
            self.log.append_unawaited(&record)?;
            Durable::Now
        };
        self.seq = seq;
        let before = self.state.bytes();
        let (kind, counted) = (ChangeKind::of(&change), self.state.counters());
        let out = self.state.apply(change);
        self.config.budget.moved(before, self.state.bytes());
        self.count(kind, &counted);
        self.note_leasing();
        self.arm_timer(ctx);
        Ok((out, durable))
    }

    /// Adds what a change of `kind` did, from counters `before`, to the queue's tally
    /// and the server's totals (`/metrics`).
    fn count(&mut self, kind: ChangeKind, before: &Counters) {
        let after = self.state.counters();
        let added = self.tally.record(kind, before, &after);
        self.config.totals.changed(kind, before, &after, added);
    }

    /// Keeps [`LeasingQueues`] up to date: touched only when the queue's leases go
    /// from none to some or back.
    fn note_leasing(&mut self) {
        let leasing = self.state.leases().next().is_some();
        if leasing != self.listed_leasing {
            self.listed_leasing = leasing;
            self.config
                .leasing
                .set(self.incarnation, &self.name, leasing);
        }
    }

    /// A change the actor makes on its own (timers, give-backs). While the log
    /// refuses changes, the timer backs off instead of firing again at once for the
    /// same due work, and the refusal is logged once, not at every try.
    pub(super) fn commit_quietly(&mut self, change: Change, ctx: &mut Context<Self>) {
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
        let next = self.next_wake_up();
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

    /// When the timer should next fire: the earliest due job or lease deadline, but
    /// not before the back-off while the log refuses changes.
    fn next_wake_up(&self) -> Option<u64> {
        let next = [
            self.state.next_due_ms(),
            self.state.next_deadline_ms(),
            self.state.next_expiry_ms(),
        ]
        .into_iter()
        .flatten()
        .min();
        match (next, self.refused_until) {
            (Some(at), Some(backoff)) => Some(at.max(backoff)),
            (next, _) => next,
        }
    }

    /// Moves due delayed jobs to the head and expired leases back, and takes out jobs
    /// whose ttl ran out (at most [`EXPIRY_BATCH`] of each; the timer comes back at
    /// once for the rest), then serves waiters.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        // First, so that a job due and expired at once leaves rather than being
        // handed out.
        if self.state.has_ttl_expired(now) {
            let change = Change::TtlExpired {
                now_ms: now,
                limit: Some(EXPIRY_BATCH),
            };
            self.commit_quietly(change, ctx);
        }
        if self.state.has_due(now) {
            let change = Change::Promoted {
                now_ms: now,
                limit: Some(EXPIRY_BATCH),
            };
            self.commit_quietly(change, ctx);
        }
        if self.state.has_expired(now) {
            let max_attempts = self.max_attempts();
            let retry_due_ms = if self.backoff() == Backoff::None {
                Vec::new()
            } else {
                let expiring = self.state.expiring_leases(now, EXPIRY_BATCH);
                expiring
                    .into_iter()
                    .map(|(_, attempt)| self.retry_due(attempt, now).unwrap_or(now))
                    .collect()
            };
            self.commit_quietly(
                Change::LeasesExpired {
                    now_ms: now,
                    max_attempts,
                    limit: Some(EXPIRY_BATCH),
                    retry_due_ms,
                },
                ctx,
            );
        }
        self.serve_waiters(ctx);
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // A recovered queue may hold leases already.
        self.note_leasing();
        // A recovered queue may hold jobs that came due, or leases that ran out, while
        // the server was down.
        self.tick(ctx);
        self.arm_timer(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::sync::oneshot;

    use super::*;
    use crate::queue::messages::{Fetch, GetCounters, LeaseRequest};
    use crate::queue::testing::{enqueue, fetch, job, start_queue};

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
    #[allow(unsafe_code)] // getrusage has no safe wrapper in std
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
}
