//! The worker registry actor: owns the [`RegistryState`] (workers, their queues and
//! start times) and when each worker was last seen, and logs every registration
//! change before applying it.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use crate::clock::now_ms;
use crate::names::{QueueName, WorkerId};
use crate::registry::state::{RegistryChange, RegistryState, WorkerImage, WorkerRecord};
use crate::storage::format::LogRecordRef;
use crate::storage::log::{Durable, Log};
use crate::storage::StorageError;

/// Mailbox capacity, raised from actix' default of 16 for the same reason as queues'.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Workers last seen are remembered for this many at most (registered workers are
/// always remembered); past it, the unregistered workers seen longest ago are
/// forgotten, a tenth of the cap at a time, so the sort that picks them runs once per
/// `MAX_SEEN / 10` new ids, not on every one.
const MAX_SEEN: usize = 100_000;

/// The worker registry.
pub struct WorkerRegistry {
    state: RegistryState,
    seq: u64,
    log: Log,
    /// When each worker was last seen (epoch ms). Not persisted: after a restart,
    /// registered workers count as seen at the start.
    last_seen: HashMap<WorkerId, u64>,
}

impl WorkerRegistry {
    /// A registry starting from `state`, whose last logged change was `seq`.
    pub fn new(state: RegistryState, seq: u64, log: Log) -> Self {
        let now = now_ms();
        let last_seen = state.all_workers().into_iter().map(|w| (w, now)).collect();
        WorkerRegistry {
            state,
            seq,
            log,
            last_seen,
        }
    }

    fn record(&self, worker: &WorkerId) -> Option<WorkerRecord> {
        self.state.worker(worker).cloned()
    }

    fn seen(&mut self, worker: WorkerId, now_ms: u64) {
        self.last_seen.insert(worker, now_ms);
        if self.last_seen.len() > MAX_SEEN {
            forget_oldest_seen(&mut self.last_seen, &self.state, MAX_SEEN - MAX_SEEN / 10);
        }
    }

    /// The one place the registry changes: logged, then applied.
    fn commit(&mut self, change: RegistryChange) -> Result<Durable, StorageError> {
        let seq = self.seq + 1;
        let durable = self.log.append(&LogRecordRef::Registry {
            seq,
            change: &change,
        })?;
        self.seq = seq;
        self.state.apply(&change);
        Ok(durable)
    }

    fn commit_and_wait(
        &mut self,
        change: RegistryChange,
    ) -> ResponseFuture<Result<(), StorageError>> {
        let committed = self.commit(change);
        Box::pin(async move { committed?.wait().await })
    }
}

/// Forgets the unregistered workers seen longest ago until at most `keep` are
/// remembered (or only registered ones are left).
fn forget_oldest_seen(last_seen: &mut HashMap<WorkerId, u64>, state: &RegistryState, keep: usize) {
    let mut unregistered: Vec<(u64, WorkerId)> = last_seen
        .iter()
        .filter(|(w, _)| !state.is_registered(w))
        .map(|(w, seen)| (*seen, w.clone()))
        .collect();
    let cut = last_seen.len().saturating_sub(keep).min(unregistered.len());
    if cut == 0 {
        return;
    }
    unregistered.select_nth_unstable(cut - 1);
    for (_, worker) in &unregistered[..cut] {
        last_seen.remove(worker);
    }
}

impl Actor for WorkerRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Registers a worker on a queue, resetting its counters and start time.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct Register {
    pub worker: WorkerId,
    pub queue: QueueName,
    pub now_secs: u64,
}

impl Handler<Register> for WorkerRegistry {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        self.seen(msg.worker.clone(), msg.now_secs.saturating_mul(1000));
        self.commit_and_wait(RegistryChange::Registered {
            worker: msg.worker.as_str().to_owned(),
            queue: msg.queue.as_str().to_owned(),
            now_secs: msg.now_secs,
        })
    }
}

/// Unregisters a worker from a queue. A worker left on no queue is forgotten, counters
/// and all.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct Unregister {
    pub worker: WorkerId,
    pub queue: QueueName,
}

impl Handler<Unregister> for WorkerRegistry {
    type Result = ResponseFuture<Result<(), StorageError>>;

    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) -> Self::Result {
        self.commit_and_wait(RegistryChange::Unregistered {
            worker: msg.worker.as_str().to_owned(),
            queue: msg.queue.as_str().to_owned(),
        })
    }
}

/// One worker's record, if registered.
#[derive(Message)]
#[rtype(result = "Option<WorkerRecord>")]
pub struct GetWorker(pub WorkerId);

impl Handler<GetWorker> for WorkerRegistry {
    type Result = Option<WorkerRecord>;

    fn handle(&mut self, msg: GetWorker, _: &mut Context<Self>) -> Self::Result {
        self.record(&msg.0)
    }
}

/// The ids of the workers registered on a queue, sorted.
#[derive(Message)]
#[rtype(result = "Vec<WorkerId>")]
pub struct QueueWorkers(pub QueueName);

impl Handler<QueueWorkers> for WorkerRegistry {
    type Result = Vec<WorkerId>;

    fn handle(&mut self, msg: QueueWorkers, _: &mut Context<Self>) -> Self::Result {
        self.state.queue_workers(&msg.0)
    }
}

/// Every registered worker id, sorted.
#[derive(Message)]
#[rtype(result = "Vec<WorkerId>")]
pub struct AllWorkers;

impl Handler<AllWorkers> for WorkerRegistry {
    type Result = Vec<WorkerId>;

    fn handle(&mut self, _: AllWorkers, _: &mut Context<Self>) -> Self::Result {
        self.state.all_workers()
    }
}

/// The registry's image for a snapshot: (last change number, workers, time taken).
#[derive(Message)]
#[rtype(result = "(u64, Vec<WorkerImage>, Duration)")]
pub struct TakeRegistryImage;

impl Handler<TakeRegistryImage> for WorkerRegistry {
    type Result = MessageResult<TakeRegistryImage>;

    fn handle(&mut self, _: TakeRegistryImage, _: &mut Context<Self>) -> Self::Result {
        let start = std::time::Instant::now();
        let image = self.state.image();
        MessageResult((self.seq, image, start.elapsed()))
    }
}

/// A request carried this worker's id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Seen(pub WorkerId);

impl Handler<Seen> for WorkerRegistry {
    type Result = ();

    fn handle(&mut self, msg: Seen, _: &mut Context<Self>) {
        self.seen(msg.0, now_ms());
    }
}

/// One worker as the liveness view shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub id: WorkerId,
    /// Present when the worker is registered.
    pub record: Option<WorkerRecord>,
    pub last_seen_ms: Option<u64>,
}

/// A page of the workers registered or seen, sorted by id: up to `limit` with ids
/// above `after`; answers them and, when more follow, the last id of the page.
#[derive(Message)]
#[rtype(result = "(Vec<WorkerView>, Option<WorkerId>)")]
pub struct ListWorkers {
    pub after: Option<WorkerId>,
    pub limit: usize,
}

impl Handler<ListWorkers> for WorkerRegistry {
    type Result = MessageResult<ListWorkers>;

    fn handle(&mut self, msg: ListWorkers, _: &mut Context<Self>) -> Self::Result {
        let after = msg.after.as_ref();
        let mut ids: Vec<&WorkerId> = self
            .last_seen
            .keys()
            .chain(self.state.worker_ids())
            .filter(|id| after.is_none_or(|after| *id > after))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len() > msg.limit;
        ids.truncate(msg.limit);
        let next = if more {
            ids.last().map(|id| (*id).clone())
        } else {
            None
        };
        let views = ids
            .into_iter()
            .map(|id| WorkerView {
                record: self.record(id),
                last_seen_ms: self.last_seen.get(id).copied(),
                id: id.clone(),
            })
            .collect();
        MessageResult((views, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> WorkerId {
        WorkerId::parse(&format!("w{n}")).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn the_unregistered_workers_seen_longest_ago_are_forgotten_first() {
        let mut state = RegistryState::default();
        state.apply(&RegistryChange::Registered {
            worker: "w0".into(),
            queue: "q".into(),
            now_secs: 1,
        });
        // w0 (registered) was seen first of all; w1..w9 later, in order.
        let mut last_seen: HashMap<WorkerId, u64> = (0..10).map(|n| (id(n), n as u64)).collect();
        forget_oldest_seen(&mut last_seen, &state, 6);
        let mut left: Vec<u64> = last_seen.values().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![0, 5, 6, 7, 8, 9]);
        // Only registered workers left to keep: they stay, whatever `keep` says.
        forget_oldest_seen(&mut last_seen, &state, 0);
        assert_eq!(last_seen.len(), 1);
        assert!(last_seen.contains_key(&id(0)));
    }
}
