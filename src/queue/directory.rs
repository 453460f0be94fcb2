//! The queue directory: finds (or creates) a queue's actor by name, and places new
//! queue actors on threads.
//!
//! Handlers read it concurrently through a read-write lock; only creating or deleting a
//! queue takes the write side, so finding a queue never funnels traffic through one
//! mailbox. Queue actors live on the HTTP workers' own arbiters (one per core by
//! default), spread round-robin: a request whose queue lives on its own worker thread
//! reaches it without a thread hop, and with one worker no request ever hops.
//!
//! Waiting never creates a queue: a long-poll on a queue that does not exist waits
//! here, in a map by name that holds only the waiting requests (each removes itself
//! when it ends, so the map is as large as the requests in flight). Whatever creates
//! the queue ([`QueueDirectory::get_or_create`]) hands that name's waiters to the new
//! actor in the same step, so a job posted during the wait reaches the waiter. A wait
//! that ends without a job leaves nothing behind: no queue, no log record.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::oneshot;

use super::actor::{QueueActor, QueueConfig};
use super::error::{QueueError, QueueResult};
use super::messages::{Fetch, Handout, LeaseRequest, ReleaseWaiters, Reply};
use super::waiters::{Adopt, PendingWaiter};
use crate::names::QueueName;
use crate::storage::log::Log;
use crate::storage::recovery::RecoveredQueue;

/// How often a message is retried when it raced a queue's deletion. One retry almost
/// always suffices; the bound only keeps a pathological delete storm from spinning.
const GONE_RETRIES: usize = 16;

/// Every live queue's actor, by name.
pub struct QueueDirectory {
    queues: RwLock<HashMap<QueueName, Addr<QueueActor>>>,
    /// The HTTP workers' arbiters, with the threads they run on.
    arbiters: RwLock<Vec<(std::thread::ThreadId, ArbiterHandle)>>,
    /// Notified as each arbiter registers.
    arbiter_added: tokio::sync::Notify,
    next_arbiter: AtomicUsize,
    /// The next queue incarnation number. Only advanced under the write lock, together
    /// with the insertion, so a snapshot that reads it and then lists the queues sees
    /// every incarnation numbered below it that still exists.
    next_incarnation: AtomicU64,
    log: Log,
    config: QueueConfig,
    /// Set at shutdown: fetches no longer park, so in-flight requests end promptly.
    /// Shared with every queue actor.
    closing: Arc<AtomicBool>,
    /// Long-polls on queues that do not exist, by queue name. Locked only after (or
    /// without) `queues`, never the other way round. A name is only here while it has
    /// waiters.
    pending: Mutex<HashMap<QueueName, Vec<PendingWaiter>>>,
    next_pending: AtomicU64,
}

/// Where a long-poll on a queue that was missing when it looked waits.
enum Parked {
    /// In the directory, as the waiter with this id.
    Here(u64),
    /// The queue was created meanwhile: the fetch goes to its actor, with its reply.
    AtQueue(Addr<QueueActor>, Reply),
}

/// Removes a waiter from the directory's pending map when its request ends, however
/// it ends (answered, timed out, or dropped because the client left).
struct PendingGuard<'a> {
    directory: &'a QueueDirectory,
    name: &'a QueueName,
    id: u64,
}

impl PendingGuard<'_> {
    /// Takes the waiter out of the pending map now: true if it was still there, so
    /// nothing can be sent to it any more.
    fn release(self) -> bool {
        let found = self.directory.forget_pending(self.name, self.id);
        std::mem::forget(self);
        found
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.directory.forget_pending(self.name, self.id);
    }
}

/// What a fetch asks for.
pub struct FetchRequest {
    pub max: usize,
    pub lease: Option<LeaseRequest>,
    /// How long to wait for a job when none is ready.
    pub wait: Option<Duration>,
}

impl QueueDirectory {
    /// An empty directory; queues are placed on the arbiters that register.
    pub fn new(next_incarnation: u64, log: Log, config: QueueConfig) -> Self {
        QueueDirectory {
            queues: RwLock::new(HashMap::new()),
            arbiters: RwLock::new(Vec::new()),
            arbiter_added: tokio::sync::Notify::new(),
            next_arbiter: AtomicUsize::new(0),
            next_incarnation: AtomicU64::new(next_incarnation),
            log,
            config,
            closing: Arc::new(AtomicBool::new(false)),
            pending: Mutex::new(HashMap::new()),
            next_pending: AtomicU64::new(0),
        }
    }

    /// Stops parking fetches and answers every parked one now, with
    /// [`QueueError::Stopping`] (shutdown).
    pub async fn release_waiters(&self) {
        // Set before the pending map is drained (under its lock) and before any actor
        // hears of it: a fetch either sees the flag or is among those released.
        self.closing.store(true, Ordering::SeqCst);
        let pending = std::mem::take(&mut *self.pending());
        for waiter in pending.into_values().flatten() {
            let _ = waiter.reply.send(Err(QueueError::Stopping));
        }
        // All at once, not one round trip after another: with many queues the last
        // ones' waiters would otherwise wait for every other queue's answer.
        let released = self.entries().into_iter().map(|(_, addr)| async move {
            let _ = addr.send(ReleaseWaiters).await;
        });
        futures_util::future::join_all(released).await;
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, Vec<PendingWaiter>>> {
        // As for `queues`: every change to the map is a single call.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many names have long-polls waiting in the directory (not at a queue).
    #[cfg(test)]
    fn pending_names(&self) -> (usize, usize) {
        let pending = self.pending();
        (pending.len(), pending.capacity())
    }

    /// Adds the calling thread's arbiter (an HTTP worker's) to those queues live on.
    pub fn register_current_arbiter(&self) {
        let thread = std::thread::current().id();
        let mut arbiters = self.arbiters.write().unwrap_or_else(|e| e.into_inner());
        if !arbiters.iter().any(|(t, _)| *t == thread) {
            arbiters.push((thread, Arbiter::current()));
            self.arbiter_added.notify_waiters();
        }
    }

    /// Resolves once `count` arbiters have registered, or fails at `deadline`.
    pub async fn wait_for_arbiters(&self, count: usize, deadline: Instant) -> Result<(), ()> {
        loop {
            // Created before the check, so a registration in between still wakes it.
            let added = self.arbiter_added.notified();
            if self.arbiters.read().map_or(0, |a| a.len()) >= count {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, added).await.is_err() {
                return Err(());
            }
        }
    }

    /// The arbiter for a new queue: the workers' in turn, or (before any registered)
    /// the calling thread's.
    fn next_arbiter(&self) -> ArbiterHandle {
        let arbiters = self.arbiters.read().unwrap_or_else(|e| e.into_inner());
        if arbiters.is_empty() {
            return Arbiter::current();
        }
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % arbiters.len();
        arbiters[i].1.clone()
    }

    /// Starts the actor of a queue brought back by recovery.
    pub fn insert_recovered(&self, queue: RecoveredQueue) {
        // Counted now, before the gate opens: the budget holds the recovered jobs
        // before the first create is checked against it.
        self.config.budget.moved(0, queue.state.bytes());
        self.config.totals.recovered(&queue.state.counters());
        let (log, config) = (self.log.clone(), self.config.clone());
        let name = queue.name.clone();
        let stopping = self.closing.clone();
        let addr = QueueActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            QueueActor::recovered(
                queue.name,
                queue.incarnation,
                queue.seq,
                queue.state,
                log,
                config,
            )
            .stopping_with(stopping)
        });
        self.write().insert(name, addr);
    }

    /// Long-polls waiting for a queue that does not exist yet.
    pub fn pending_waiters(&self) -> usize {
        self.pending().values().map(Vec::len).sum()
    }

    /// The settings every queue follows (the memory budget among them).
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The highest incarnation number handed out so far.
    pub fn incarnation_watermark(&self) -> u64 {
        self.next_incarnation
            .load(Ordering::SeqCst)
            .saturating_sub(1)
    }

    /// The next incarnation number to be handed out.
    pub fn next_incarnation(&self) -> u64 {
        self.next_incarnation.load(Ordering::SeqCst)
    }

    /// Every queue and its actor.
    pub fn entries(&self) -> Vec<(QueueName, Addr<QueueActor>)> {
        self.read()
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<QueueName, Addr<QueueActor>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is
        // still consistent (inserts and removes are single calls).
        self.queues.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<QueueName, Addr<QueueActor>>> {
        self.queues.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue's actor, if the queue exists.
    pub fn get(&self, name: &QueueName) -> Option<Addr<QueueActor>> {
        self.read().get(name).cloned()
    }

    /// The queue's actor, creating the queue if needed. A new queue's actor first
    /// gets the long-polls that were waiting for it.
    pub fn get_or_create(&self, name: &QueueName) -> Addr<QueueActor> {
        if let Some(addr) = self.get(name) {
            return addr;
        }
        let mut map = self.write();
        if let Some(addr) = map.get(name) {
            return addr.clone();
        }
        let incarnation = self.next_incarnation.fetch_add(1, Ordering::SeqCst);
        let (owned, log, config) = (name.clone(), self.log.clone(), self.config.clone());
        let stopping = self.closing.clone();
        let addr = QueueActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            QueueActor::new(owned, incarnation, log, config).stopping_with(stopping)
        });
        map.insert(name.clone(), addr.clone());
        // Still under the write lock: no waiter can park here for this name any more,
        // and the creator's own message is sent after this one.
        let waiting = self.take_pending(name);
        if !waiting.is_empty() {
            addr.do_send(Adopt(waiting));
        }
        addr
    }

    /// Takes the waiters parked in the directory for `name`.
    fn take_pending(&self, name: &QueueName) -> Vec<PendingWaiter> {
        let mut pending = self.pending();
        let waiting = pending.remove(name).unwrap_or_default();
        shrink(&mut pending);
        waiting
    }

    /// Parks a long-poll on `name` in the directory, unless the queue exists by now.
    fn park_pending(
        &self,
        name: &QueueName,
        request: &FetchRequest,
        deadline: Instant,
        reply: Reply,
    ) -> QueueResult<Parked> {
        // The read side keeps the queue from being created until the waiter is in the
        // map, where the creation will find it.
        let queues = self.read();
        if let Some(addr) = queues.get(name) {
            return Ok(Parked::AtQueue(addr.clone(), reply));
        }
        let mut pending = self.pending();
        // Checked under the lock `release_waiters` drains under.
        if self.closing.load(Ordering::SeqCst) {
            return Err(QueueError::Stopping);
        }
        let limit = self.config.max_waiters;
        if pending.get(name).map_or(0, Vec::len) >= limit {
            return Err(QueueError::TooManyWaiters(limit));
        }
        let id = self.next_pending.fetch_add(1, Ordering::Relaxed);
        pending
            .entry(name.clone())
            .or_default()
            .push(PendingWaiter {
                id,
                max: request.max,
                lease: request.lease.clone(),
                deadline,
                reply,
            });
        Ok(Parked::Here(id))
    }

    /// Drops waiter `id` of `name` from the pending map; whether it was still there
    /// (false once a new queue adopted it, or shutdown answered it).
    fn forget_pending(&self, name: &QueueName, id: u64) -> bool {
        let mut pending = self.pending();
        let Some(waiters) = pending.get_mut(name) else {
            return false;
        };
        let before = waiters.len();
        waiters.retain(|w| w.id != id);
        let found = waiters.len() < before;
        if waiters.is_empty() {
            pending.remove(name);
            shrink(&mut pending);
        }
        found
    }

    /// Waits for the answer of a long-poll parked in the directory as `id`: a job
    /// handed over by the queue once created, or the usual empty answer at `deadline`.
    async fn await_pending(
        &self,
        name: &QueueName,
        id: u64,
        deadline: Instant,
        mut answer: oneshot::Receiver<QueueResult<Handout>>,
    ) -> QueueResult<Handout> {
        let guard = PendingGuard {
            directory: self,
            name,
            id,
        };
        let answered = match tokio::time::timeout_at(deadline.into(), &mut answer).await {
            Ok(answered) => answered,
            Err(_) => {
                // Still in the map at the deadline: the queue was never created, and
                // out of the map nothing can be sent to the waiter any more.
                if guard.release() {
                    return Err(QueueError::Empty);
                }
                // Taken from the map, by a queue created meanwhile (its actor times
                // the wait out at the same deadline with the answer of a wait at that
                // queue, `no job` or `queue is closed`, or hands over a job that came
                // at the last moment) or by shutdown (which has answered).
                answer.await
            }
        };
        match answered {
            // The queue was deleted right after it was created: nothing for us.
            Ok(Err(QueueError::Gone)) | Err(_) => Err(QueueError::Empty),
            Ok(result) => result,
        }
    }

    /// Removes the queue from the directory, returning its actor.
    pub fn remove(&self, name: &QueueName) -> Option<Addr<QueueActor>> {
        self.write().remove(name)
    }

    /// How many queues exist.
    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// Every queue's name, in no order: for a caller that sorts them its own way.
    pub fn unsorted_names(&self) -> Vec<QueueName> {
        self.read().keys().cloned().collect()
    }

    /// Every queue's name, sorted.
    pub fn names(&self) -> Vec<QueueName> {
        let mut names: Vec<QueueName> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Sends a message to the queue, creating it first if `create`. `None` when the
    /// queue does not exist and `create` is false.
    pub async fn ask<M, T>(
        &self,
        name: &QueueName,
        create: bool,
        make: impl Fn() -> M,
    ) -> QueueResult<Option<T>>
    where
        M: Message<Result = QueueResult<T>> + Send + 'static,
        T: Send + 'static,
        QueueActor: Handler<M>,
        <QueueActor as Actor>::Context: ToEnvelope<QueueActor, M>,
    {
        self.with_queue(name, create, |addr| {
            let message = make();
            async move { addr.send(message).await.ok() }
        })
        .await
    }

    /// Fetches (or leases) jobs from the head of the queue. A fetch that may wait
    /// parks at the queue's actor, which answers it when a job arrives or when the
    /// wait is over; on a queue that does not exist it parks in the directory (see
    /// the module's comment). Once the server is stopping, a fetch that would wait is
    /// answered [`QueueError::Stopping`] instead.
    pub async fn fetch(&self, name: &QueueName, request: FetchRequest) -> QueueResult<Handout> {
        let wait = request.wait.filter(|w| !w.is_zero());
        let deadline = wait.map(|w| Instant::now() + w);
        for _ in 0..GONE_RETRIES {
            let (reply, answer) = oneshot::channel();
            let (addr, reply) = match (self.get(name), deadline) {
                (Some(addr), _) => (addr, reply),
                (None, None) => return Err(QueueError::Empty),
                (None, Some(deadline)) => {
                    match self.park_pending(name, &request, deadline, reply)? {
                        Parked::Here(id) => {
                            return self.await_pending(name, id, deadline, answer).await
                        }
                        Parked::AtQueue(addr, reply) => (addr, reply),
                    }
                }
            };
            let fetch = Fetch {
                max: request.max,
                lease: request.lease.clone(),
                wait: deadline.map(|d| d.saturating_duration_since(Instant::now())),
                reply,
            };
            // The answer comes through `reply`: no need for actix's own reply channel
            // (and its future) unless the mailbox is full and we must wait for room.
            match addr.try_send(fetch) {
                Ok(()) => {}
                Err(SendError::Full(fetch)) => {
                    if addr.send(fetch).await.is_err() {
                        continue;
                    }
                }
                Err(SendError::Closed(_)) => continue,
            }
            match answer.await {
                Err(_) | Ok(Err(QueueError::Gone)) => continue,
                Ok(result) => return result,
            }
        }
        Err(QueueError::Gone)
    }

    /// Runs `attempt` against the queue's actor (creating the queue first if
    /// `create`), again if the queue was deleted under our feet (`attempt` answering
    /// `None` for an actor that stopped, or [`QueueError::Gone`]), so the message
    /// lands on the queue's current incarnation.
    async fn with_queue<T, F, Fut>(
        &self,
        name: &QueueName,
        create: bool,
        mut attempt: F,
    ) -> QueueResult<Option<T>>
    where
        F: FnMut(Addr<QueueActor>) -> Fut,
        Fut: Future<Output = Option<QueueResult<T>>>,
    {
        for _ in 0..GONE_RETRIES {
            let addr = match self.get(name) {
                Some(addr) => addr,
                None if create => self.get_or_create(name),
                None => return Ok(None),
            };
            match attempt(addr).await {
                None | Some(Err(QueueError::Gone)) => continue,
                Some(result) => return result.map(Some),
            }
        }
        Err(QueueError::Gone)
    }
}

/// Gives memory back after a crowd of waiters on many names has left.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::queue::job::{Job, JobId};
    use crate::queue::messages::{Arrival, Enqueue};
    use crate::storage::log::FsyncPolicy;

    fn directory() -> (QueueDirectory, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
        (QueueDirectory::new(1, log, QueueConfig::default()), dir)
    }

    fn name(n: &str) -> QueueName {
        QueueName::parse(n).expect("name")
    }

    fn waiting(ms: u64) -> FetchRequest {
        FetchRequest {
            max: 1,
            lease: None,
            wait: Some(Duration::from_millis(ms)),
        }
    }

    /// Thousands of distinct unknown names polled at once: none becomes a queue, and
    /// the directory holds nothing for them afterwards, whether their waits ran out
    /// or their clients left.
    #[actix::test]
    async fn waits_on_unknown_queues_leave_nothing_behind() {
        let (dir, _guard) = directory();
        let names: Vec<QueueName> = (0..5_000).map(|i| name(&format!("u{i}"))).collect();
        let ran_out = names.iter().map(|n| dir.fetch(n, waiting(100)));
        let answers = futures_util::future::join_all(ran_out).await;
        assert!(answers.iter().all(|a| *a == Err(QueueError::Empty)));
        let left = names.iter().map(|n| {
            tokio::time::timeout(Duration::from_millis(50), dir.fetch(n, waiting(10_000)))
        });
        let answers = futures_util::future::join_all(left).await;
        assert!(answers.iter().all(Result::is_err), "a wait ended early");
        let (count, capacity) = dir.pending_names();
        assert_eq!(count, 0);
        assert!(capacity <= 64, "capacity {capacity} kept");
        assert!(dir.names().is_empty());
        assert_eq!(dir.next_incarnation(), 1, "a queue was made");
    }

    /// Creating a queue hands it the waiters that waited for it.
    #[actix::test]
    async fn a_created_queue_serves_the_waiters_parked_before_it() {
        let (dir, _guard) = directory();
        let q = name("later");
        let waiter = dir.fetch(&q, waiting(5_000));
        let poster = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let job = Job {
                id: JobId(1),
                body: Bytes::from_static(b"1"),
                uniq: None,
                priority: crate::queue::job::DEFAULT_PRIORITY,
            };
            let posted = dir
                .ask(&q, true, || Enqueue {
                    jobs: vec![job.clone()],
                    due_ms: None,
                    expires_ms: None,
                    arrival: Arrival::Posted,
                })
                .await;
            assert_eq!(posted, Ok(Some(())));
        };
        let (got, ()) = tokio::join!(waiter, poster);
        assert_eq!(got.map(|jobs| jobs.len()), Ok(1));
        assert_eq!(dir.pending_names().0, 0);
    }

    /// Once shutdown began, a fetch that would wait is refused at once, whether its
    /// queue exists or not; one without a wait is answered as usual.
    #[actix::test]
    async fn after_release_fetches_that_would_wait_are_told_the_server_stops() {
        let (dir, _guard) = directory();
        let known = name("known");
        let unknown = name("unknown");
        let _ = dir.get_or_create(&known);
        let parked = dir.fetch(&unknown, waiting(10_000));
        let releaser = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            dir.release_waiters().await;
        };
        let (parked, ()) = tokio::join!(parked, releaser);
        assert_eq!(parked, Err(QueueError::Stopping));
        let started = Instant::now();
        for q in [&known, &unknown] {
            assert_eq!(
                dir.fetch(q, waiting(10_000)).await,
                Err(QueueError::Stopping)
            );
            let now = FetchRequest {
                wait: None,
                ..waiting(0)
            };
            assert_eq!(dir.fetch(q, now).await, Err(QueueError::Empty));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
