//! The worker registry actor: which workers exist, the queues each is registered on,
//! their processed/failed counts and when they started.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix::prelude::*;

use crate::names::{QueueName, WorkerId};

/// Mailbox capacity, raised from actix' default of 16 for the same reason as queues'.
pub const MAILBOX_CAPACITY: usize = 4096;

/// What the registry knows of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub started_at: u64,
    pub processed: u64,
    pub failed: u64,
    pub queues: BTreeSet<QueueName>,
}

/// The worker registry.
#[derive(Default)]
pub struct WorkerRegistry {
    workers: BTreeMap<WorkerId, WorkerRecord>,
    by_queue: HashMap<QueueName, BTreeSet<WorkerId>>,
}

impl Actor for WorkerRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Registers a worker on a queue, resetting its counters and start time.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub worker: WorkerId,
    pub queue: QueueName,
    pub now_secs: u64,
}

impl Handler<Register> for WorkerRegistry {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        let record = self
            .workers
            .entry(msg.worker.clone())
            .or_insert_with(|| WorkerRecord {
                started_at: msg.now_secs,
                processed: 0,
                failed: 0,
                queues: BTreeSet::new(),
            });
        record.started_at = msg.now_secs;
        record.processed = 0;
        record.failed = 0;
        record.queues.insert(msg.queue.clone());
        self.by_queue
            .entry(msg.queue)
            .or_default()
            .insert(msg.worker);
    }
}

/// Unregisters a worker from a queue. A worker left on no queue is forgotten, counters
/// and all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub worker: WorkerId,
    pub queue: QueueName,
}

impl Handler<Unregister> for WorkerRegistry {
    type Result = ();

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        if let Some(set) = self.by_queue.get_mut(&msg.queue) {
            set.remove(&msg.worker);
            if set.is_empty() {
                self.by_queue.remove(&msg.queue);
            }
        }
        if let Some(record) = self.workers.get_mut(&msg.worker) {
            record.queues.remove(&msg.queue);
            if record.queues.is_empty() {
                self.workers.remove(&msg.worker);
            }
        }
    }
}

/// Adds to a registered worker's counters (unregistered ids are not tracked).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CountWork {
    pub worker: WorkerId,
    pub processed: u64,
    pub failed: u64,
}

impl Handler<CountWork> for WorkerRegistry {
    type Result = ();

    fn handle(&mut self, msg: CountWork, _: &mut Context<Self>) {
        if let Some(record) = self.workers.get_mut(&msg.worker) {
            record.processed += msg.processed;
            record.failed += msg.failed;
        }
    }
}

/// One worker's record, if registered.
#[derive(Message)]
#[rtype(result = "Option<WorkerRecord>")]
pub struct GetWorker(pub WorkerId);

impl Handler<GetWorker> for WorkerRegistry {
    type Result = Option<WorkerRecord>;

    fn handle(&mut self, msg: GetWorker, _: &mut Context<Self>) -> Self::Result {
        self.workers.get(&msg.0).cloned()
    }
}

/// The ids of the workers registered on a queue, sorted.
#[derive(Message)]
#[rtype(result = "Vec<WorkerId>")]
pub struct QueueWorkers(pub QueueName);

impl Handler<QueueWorkers> for WorkerRegistry {
    type Result = Vec<WorkerId>;

    fn handle(&mut self, msg: QueueWorkers, _: &mut Context<Self>) -> Self::Result {
        self.by_queue
            .get(&msg.0)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Every registered worker id, sorted.
#[derive(Message)]
#[rtype(result = "Vec<WorkerId>")]
pub struct AllWorkers;

impl Handler<AllWorkers> for WorkerRegistry {
    type Result = Vec<WorkerId>;

    fn handle(&mut self, _: AllWorkers, _: &mut Context<Self>) -> Self::Result {
        self.workers.keys().cloned().collect()
    }
}
