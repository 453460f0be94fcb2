//! The queue directory: finds (or creates) a queue's actor by name, and places new
//! queue actors on threads.
//!
//! Handlers read it concurrently through a read-write lock; only creating or deleting a
//! queue takes the write side, so finding a queue never funnels traffic through one
//! mailbox. Queue actors live on the HTTP workers' own arbiters (one per core by
//! default), spread round-robin: a request whose queue lives on its own worker thread
//! reaches it without a thread hop, and with one worker no request ever hops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::oneshot;

use super::actor::{QueueActor, QueueConfig};
use super::error::{QueueError, QueueResult};
use super::messages::Handout;
use super::messages::{Fetch, LeaseRequest, ReleaseWaiters};
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
    /// parks at the queue's actor, creating the queue if needed; the actor answers it
    /// when a job arrives or when the wait is over.
    pub async fn fetch(&self, name: &QueueName, request: FetchRequest) -> QueueResult<Handout> {
        let wait = request
            .wait
            .filter(|w| !w.is_zero() && !self.closing.load(Ordering::SeqCst));
        let fetched = self.with_queue(name, wait.is_some(), |addr| {
            let (reply, answer) = oneshot::channel();
            let fetch = Fetch {
                max: request.max,
                lease: request.lease.clone(),
                wait,
                reply,
            };
            async move {
                addr.send(fetch).await.ok()?;
                answer.await.ok()
            }
        });
        fetched.await?.ok_or(QueueError::Empty)
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
