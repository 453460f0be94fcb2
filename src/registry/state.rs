//! The worker registry's state and the only code that changes it, built like
//! [`crate::queue::state`]: every registration change is a [`RegistryChange`] passed
//! to [`RegistryState::apply`], which the log records and recovery replays.
//!
//! Workers' processed/failed counters live in [`WorkerCounts`], the one place they
//! are kept: handlers add to them without a message, the state resets and drops them
//! as workers register and leave, and snapshots carry them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::counts::WorkerCounts;
use crate::names::{QueueName, WorkerId};

/// A change to the registry. Names are plain strings so the log can carry them;
/// [`RegistryState::apply`] validates them again when replaying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryChange {
    /// A worker registered on a queue: counters reset, `started_at` set.
    Registered {
        worker: String,
        queue: String,
        now_secs: u64,
    },
    /// A worker left a queue; a worker on no queue is forgotten.
    Unregistered { worker: String, queue: String },
}

/// What the registry knows of one registered worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub started_at: u64,
    pub queues: BTreeSet<QueueName>,
}

/// One worker as stored in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerImage {
    pub id: String,
    pub started_at: u64,
    pub processed: u64,
    pub failed: u64,
    pub queues: Vec<String>,
}

/// Every registered worker, the queues each is on, and their counters.
#[derive(Debug, Default)]
pub struct RegistryState {
    workers: BTreeMap<WorkerId, WorkerRecord>,
    by_queue: HashMap<QueueName, BTreeSet<WorkerId>>,
    counts: Arc<WorkerCounts>,
}

impl RegistryState {
    /// Applies one change. Names that fail validation (only possible in a damaged
    /// file, since requests are checked) leave the state untouched.
    pub fn apply(&mut self, change: &RegistryChange) {
        match change {
            RegistryChange::Registered {
                worker,
                queue,
                now_secs,
            } => {
                let (Ok(worker), Ok(queue)) = (WorkerId::restore(worker), QueueName::parse(queue))
                else {
                    return;
                };
                let record = self
                    .workers
                    .entry(worker.clone())
                    .or_insert_with(|| WorkerRecord {
                        started_at: *now_secs,
                        queues: BTreeSet::new(),
                    });
                record.started_at = *now_secs;
                self.counts.set(&worker, 0, 0);
                record.queues.insert(queue.clone());
                self.by_queue.entry(queue).or_default().insert(worker);
            }
            RegistryChange::Unregistered { worker, queue } => {
                let (Ok(worker), Ok(queue)) = (WorkerId::restore(worker), QueueName::parse(queue))
                else {
                    return;
                };
                if let Some(set) = self.by_queue.get_mut(&queue) {
                    set.remove(&worker);
                    if set.is_empty() {
                        self.by_queue.remove(&queue);
                    }
                }
                if let Some(record) = self.workers.get_mut(&worker) {
                    record.queues.remove(&queue);
                    if record.queues.is_empty() {
                        self.workers.remove(&worker);
                        self.counts.remove(&worker);
                    }
                }
            }
        }
    }

    /// Whether `worker` is registered (only registered workers' counts are kept).
    pub fn is_registered(&self, worker: &WorkerId) -> bool {
        self.workers.contains_key(worker)
    }

    pub fn worker(&self, worker: &WorkerId) -> Option<&WorkerRecord> {
        self.workers.get(worker)
    }

    /// The workers on a queue, sorted.
    pub fn queue_workers(&self, queue: &QueueName) -> Vec<WorkerId> {
        self.by_queue
            .get(queue)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every registered worker's id, sorted, without copying them.
    pub fn worker_ids(&self) -> impl Iterator<Item = &WorkerId> {
        self.workers.keys()
    }

    /// Every registered worker, sorted.
    pub fn all_workers(&self) -> Vec<WorkerId> {
        self.workers.keys().cloned().collect()
    }

    /// The live counters, shared with the request handlers that add to them.
    pub fn counts(&self) -> Arc<WorkerCounts> {
        self.counts.clone()
    }

    /// The registry as stored in a snapshot, counters as they stand now.
    pub fn image(&self) -> Vec<WorkerImage> {
        self.workers
            .iter()
            .map(|(id, r)| {
                let (processed, failed) = self.counts.get(id);
                WorkerImage {
                    id: id.as_str().to_owned(),
                    started_at: r.started_at,
                    processed,
                    failed,
                    queues: r.queues.iter().map(|q| q.as_str().to_owned()).collect(),
                }
            })
            .collect()
    }

    /// The registry a snapshot describes; entries with invalid names are skipped.
    pub fn from_image(image: &[WorkerImage]) -> Self {
        let mut state = RegistryState::default();
        for w in image {
            let Ok(id) = WorkerId::restore(&w.id) else {
                continue;
            };
            let queues: BTreeSet<QueueName> = w
                .queues
                .iter()
                .filter_map(|q| QueueName::parse(q).ok())
                .collect();
            for q in &queues {
                state
                    .by_queue
                    .entry(q.clone())
                    .or_default()
                    .insert(id.clone());
            }
            state.counts.set(&id, w.processed, w.failed);
            state.workers.insert(
                id,
                WorkerRecord {
                    started_at: w.started_at,
                    queues,
                },
            );
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(worker: &str, queue: &str) -> RegistryChange {
        RegistryChange::Registered {
            worker: worker.into(),
            queue: queue.into(),
            now_secs: 7,
        }
    }

    #[test]
    fn register_count_unregister() {
        let mut s = RegistryState::default();
        s.apply(&reg("w", "q1"));
        s.apply(&reg("w", "q2"));
        let w = WorkerId::parse("w").ok();
        let Some(w) = w else { unreachable!() };
        s.counts().count(&w, 3, 1);
        assert_eq!(s.worker(&w).map(|r| r.started_at), Some(7));
        assert_eq!(s.image()[0].processed, 3);
        s.apply(&reg("w", "q1"));
        assert_eq!(
            s.counts().get(&w),
            (0, 0),
            "registering again resets counters"
        );
        s.counts().count(&w, 3, 1);
        s.apply(&RegistryChange::Unregistered {
            worker: "w".into(),
            queue: "q1".into(),
        });
        assert_eq!(s.all_workers().len(), 1);
        s.apply(&RegistryChange::Unregistered {
            worker: "w".into(),
            queue: "q2".into(),
        });
        assert!(s.all_workers().is_empty());
        assert_eq!(
            s.counts().get(&w),
            (0, 0),
            "a forgotten worker's counters go"
        );
    }

    #[test]
    fn image_round_trip() {
        let mut s = RegistryState::default();
        s.apply(&reg("a", "q"));
        s.apply(&reg("b", "q"));
        if let Ok(a) = WorkerId::parse("a") {
            s.counts().count(&a, 5, 2);
        }
        let back = RegistryState::from_image(&s.image());
        assert_eq!(back.image(), s.image());
        let q = QueueName::parse("q").ok();
        assert_eq!(q.map(|q| back.queue_workers(&q).len()), Some(2));
    }
}
