//! The queue directory: finds (or creates) a queue's actor by name.
//!
//! Handlers read it concurrently through a read-write lock; only creating or deleting a
//! queue takes the write side, so finding a queue never funnels traffic through one
//! mailbox. Queue actors live on the HTTP workers' own arbiters (one per core by
//! default), spread round-robin: a request whose queue lives on its own worker thread
//! reaches it without a thread hop, and with one worker no request ever hops.
//!
//! The directory opens only once recovery has put back every recovered queue, so no
//! request can create an empty twin of a queue that is still being restored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::oneshot;

use crate::names::QueueName;
use crate::queue::actor::{
    Fetch, LeaseRequest, QueueActor, QueueConfig, QueueError, QueueResult, ReleaseWaiters,
};
use crate::queue::job::{Job, JobIds};
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
    open: AtomicBool,
    opened: tokio::sync::Notify,
    next_arbiter: AtomicUsize,
    ids: JobIds,
    /// The next queue incarnation number. Only advanced under the write lock, together
    /// with the insertion, so a snapshot that reads it and then lists the queues sees
    /// every incarnation numbered below it that still exists.
    next_incarnation: AtomicU64,
    log: Log,
    config: QueueConfig,
    /// Set at shutdown: fetches no longer park, so in-flight requests end promptly.
    closing: AtomicBool,
}

/// What a fetch asks for.
pub struct FetchRequest {
    pub max: usize,
    pub lease: Option<LeaseRequest>,
    /// How long to wait for a job when none is ready.
    pub wait: Option<Duration>,
}

impl QueueDirectory {
    /// A directory placing new queues on `arbiters` (at least one).
    pub fn new(ids: JobIds, next_incarnation: u64, log: Log, config: QueueConfig) -> Self {
        QueueDirectory {
            queues: RwLock::new(HashMap::new()),
            arbiters: RwLock::new(Vec::new()),
            open: AtomicBool::new(false),
            opened: tokio::sync::Notify::new(),
            next_arbiter: AtomicUsize::new(0),
            ids,
            next_incarnation: AtomicU64::new(next_incarnation),
            log,
            config,
            closing: AtomicBool::new(false),
        }
    }

    /// Stops parking fetches and answers every parked one now (shutdown).
    pub async fn release_waiters(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for (_, addr) in self.entries() {
            let _ = addr.send(ReleaseWaiters).await;
        }
    }

    /// Adds the calling thread's arbiter (an HTTP worker's) to those queues live on.
    pub fn register_current_arbiter(&self) {
        let thread = std::thread::current().id();
        let mut arbiters = self.arbiters.write().unwrap_or_else(|e| e.into_inner());
        if !arbiters.iter().any(|(t, _)| *t == thread) {
            arbiters.push((thread, Arbiter::current()));
        }
    }

    /// How many arbiters have registered.
    pub fn arbiter_count(&self) -> usize {
        self.arbiters.read().map_or(0, |a| a.len())
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

    /// Lets requests in (recovery is complete).
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    /// Resolves once the directory is open.
    pub async fn wait_open(&self) {
        if self.open.load(Ordering::Acquire) {
            return;
        }
        loop {
            let notified = self.opened.notified();
            if self.open.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Starts the actor of a queue brought back by recovery.
    pub fn insert_recovered(&self, queue: RecoveredQueue) {
        let (log, config) = (self.log.clone(), self.config);
        let name = queue.name.clone();
        let addr = QueueActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            QueueActor::recovered(
                queue.name,
                queue.incarnation,
                queue.seq,
                queue.state,
                log,
                config,
            )
        });
        self.write().insert(name, addr);
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

    /// The job id generator shared by all queues.
    pub fn ids(&self) -> &JobIds {
        &self.ids
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

    /// The queue's actor, creating the queue if needed.
    pub fn get_or_create(&self, name: &QueueName) -> Addr<QueueActor> {
        if let Some(addr) = self.get(name) {
            return addr;
        }
        let mut map = self.write();
        map.entry(name.clone())
            .or_insert_with(|| {
                let incarnation = self.next_incarnation.fetch_add(1, Ordering::SeqCst);
                let (name, log, config) = (name.clone(), self.log.clone(), self.config);
                QueueActor::start_in_arbiter(&self.next_arbiter(), move |_| {
                    QueueActor::new(name, incarnation, log, config)
                })
            })
            .clone()
    }

    /// Removes the queue from the directory, returning its actor.
    pub fn remove(&self, name: &QueueName) -> Option<Addr<QueueActor>> {
        self.write().remove(name)
    }

    /// Every queue's name, sorted.
    pub fn names(&self) -> Vec<QueueName> {
        let mut names: Vec<QueueName> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Sends a message to the queue, creating it first if `create`. `None` when the
    /// queue does not exist and `create` is false. Retries on a queue deleted under
    /// our feet, so the message lands on the queue's current incarnation.
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
        for _ in 0..GONE_RETRIES {
            let addr = if create {
                self.get_or_create(name)
            } else {
                match self.get(name) {
                    Some(addr) => addr,
                    None => return Ok(None),
                }
            };
            match addr.send(make()).await {
                Ok(Err(QueueError::Gone)) | Err(_) => continue,
                Ok(result) => return result.map(Some),
            }
        }
        Err(QueueError::Gone)
    }

    /// Fetches (or leases) jobs from the head of the queue. A fetch that may wait
    /// parks at the queue's actor, creating the queue if needed; the actor answers it
    /// when a job arrives or when the wait is over.
    pub async fn fetch(&self, name: &QueueName, request: FetchRequest) -> QueueResult<Vec<Job>> {
        let wait = request
            .wait
            .filter(|w| !w.is_zero() && !self.closing.load(Ordering::SeqCst));
        for _ in 0..GONE_RETRIES {
            let addr = match (wait, self.get(name)) {
                (_, Some(addr)) => addr,
                (Some(_), None) => self.get_or_create(name),
                (None, None) => return Err(QueueError::Empty),
            };
            let (reply, answer) = oneshot::channel();
            let fetch = Fetch {
                max: request.max,
                lease: request.lease.clone(),
                wait,
                reply,
            };
            if addr.send(fetch).await.is_err() {
                continue;
            }
            match answer.await {
                Ok(Err(QueueError::Gone)) | Err(_) => continue,
                Ok(result) => return result,
            }
        }
        Err(QueueError::Gone)
    }
}
