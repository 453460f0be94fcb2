//! One queue's state and the only code that changes it.
//!
//! Every mutation is a [`Change`] passed to [`QueueState::apply`]. That single door is
//! the seam persistence hangs on: a change can be logged before it is applied, and the
//! same `apply` replays a log at recovery. Checks that can refuse a request (duplicate
//! `uniq`, closed queue, nothing ready) are read-only methods the actor calls first, so
//! `apply` itself never fails and replaying never diverges.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

use crate::job::{Job, JobId};

/// A change to a queue. Deterministic given the state it applies to, so the log can
/// record it and recovery can replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Jobs appended at the tail, or (with `due_ms`) held until that time.
    Enqueued { jobs: Vec<Job>, due_ms: Option<u64> },
    /// Delayed jobs due at or before `now_ms` move to the head, earliest first.
    Promoted { now_ms: u64 },
    /// Up to `count` jobs leave the head: fetched; each counts as processed.
    Taken { count: usize },
    /// Jobs taken but never delivered (the client left) return to the head.
    Returned { jobs: Vec<Job> },
    /// A worker reported a failed job.
    FailureCounted,
    /// The queue opened (`true`) or closed (`false`) for fetching.
    OpenSet(bool),
    /// The queue was deleted: jobs, keys, counters and open flag all go.
    Purged,
}

/// The counters `/j`, `/status` and `/control` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub ready: usize,
    pub delayed: usize,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
}

/// Everything a queue holds, as persistent collections: cloning it is O(1), which is
/// how a snapshot takes a consistent image without stalling the queue. `uniq` keys are
/// not stored: they are exactly the keys of the waiting jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueImage {
    pub ready: Vector<Job>,
    pub head_len: usize,
    pub delayed: OrdMap<(u64, JobId), Job>,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
}

/// A queue: ready jobs in FIFO order, delayed jobs by due time, live `uniq` keys,
/// counters and the open flag.
#[derive(Debug)]
pub struct QueueState {
    ready: Vector<Job>,
    /// How many jobs at the front of `ready` were put there ahead of the FIFO order
    /// (due delayed jobs, returned jobs): later promotions queue up behind them, so
    /// due jobs keep their due-time order among themselves.
    head_len: usize,
    /// Keyed by (due time, id) so equal due times keep their creation order.
    delayed: OrdMap<(u64, JobId), Job>,
    uniq: HashSet<Arc<str>>,
    processed: u64,
    failed: u64,
    open: bool,
}

impl Default for QueueState {
    fn default() -> Self {
        QueueState {
            ready: Vector::new(),
            head_len: 0,
            delayed: OrdMap::new(),
            uniq: HashSet::new(),
            processed: 0,
            failed: 0,
            open: true,
        }
    }
}

impl QueueState {
    /// Applies one change. The only method that mutates the queue; returns the jobs a
    /// [`Change::Taken`] removed (empty for every other change).
    pub fn apply(&mut self, change: Change) -> Vec<Job> {
        match change {
            Change::Enqueued { jobs, due_ms } => {
                for job in jobs {
                    if let Some(key) = &job.uniq {
                        self.uniq.insert(key.clone());
                    }
                    match due_ms {
                        Some(due) => {
                            self.delayed.insert((due, job.id), job);
                        }
                        None => self.ready.push_back(job),
                    }
                }
                Vec::new()
            }
            Change::Promoted { now_ms } => {
                while let Some(key) = self
                    .delayed
                    .get_min()
                    .map(|(key, _)| *key)
                    .filter(|(due, _)| *due <= now_ms)
                {
                    if let Some(job) = self.delayed.remove(&key) {
                        self.ready.insert(self.head_len, job);
                        self.head_len += 1;
                    }
                }
                Vec::new()
            }
            Change::Taken { count } => {
                let count = count.min(self.ready.len());
                let mut taken = Vec::with_capacity(count);
                while taken.len() < count {
                    match self.ready.pop_front() {
                        Some(job) => taken.push(job),
                        None => break,
                    }
                }
                self.head_len = self.head_len.saturating_sub(count);
                for job in &taken {
                    if let Some(key) = &job.uniq {
                        self.uniq.remove(key);
                    }
                }
                self.processed += taken.len() as u64;
                taken
            }
            Change::Returned { jobs } => {
                self.processed = self.processed.saturating_sub(jobs.len() as u64);
                for job in jobs {
                    if let Some(key) = &job.uniq {
                        self.uniq.insert(key.clone());
                    }
                    // Back where it was taken from: ahead of younger jobs at the head,
                    // so several abandoned fetches returning in any order keep FIFO.
                    let at = (0..self.head_len)
                        .find(|&i| self.ready.get(i).is_some_and(|j| j.id > job.id))
                        .unwrap_or(self.head_len);
                    self.ready.insert(at, job);
                    self.head_len += 1;
                }
                Vec::new()
            }
            Change::FailureCounted => {
                self.failed += 1;
                Vec::new()
            }
            Change::OpenSet(open) => {
                self.open = open;
                Vec::new()
            }
            Change::Purged => {
                *self = QueueState::default();
                Vec::new()
            }
        }
    }

    /// Whether a job holding `key` is still waiting (ready or delayed).
    pub fn holds_uniq(&self, key: &str) -> bool {
        self.uniq.contains(key)
    }

    /// Whether fetching is allowed.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Number of jobs ready to fetch.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The due time of the earliest delayed job.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.delayed.get_min().map(|((due, _), _)| *due)
    }

    /// A consistent image of the queue, in O(1).
    pub fn image(&self) -> QueueImage {
        QueueImage {
            ready: self.ready.clone(),
            head_len: self.head_len,
            delayed: self.delayed.clone(),
            processed: self.processed,
            failed: self.failed,
            open: self.open,
        }
    }

    /// The queue an image was taken of.
    pub fn from_image(image: QueueImage) -> Self {
        let uniq = image
            .ready
            .iter()
            .chain(image.delayed.values())
            .filter_map(|job| job.uniq.clone())
            .collect();
        QueueState {
            head_len: image.head_len.min(image.ready.len()),
            ready: image.ready,
            delayed: image.delayed,
            uniq,
            processed: image.processed,
            failed: image.failed,
            open: image.open,
        }
    }

    /// The highest job id held, if any (recovery restarts the id counter above it).
    pub fn max_job_id(&self) -> Option<u64> {
        self.ready
            .iter()
            .chain(self.delayed.values())
            .map(|job| job.id.0)
            .max()
    }

    /// Whether some delayed job is due at `now_ms`.
    pub fn has_due(&self, now_ms: u64) -> bool {
        self.next_due_ms().is_some_and(|due| due <= now_ms)
    }

    /// The ready jobs' bodies in queue order.
    pub fn ready_bodies(&self) -> Vec<Bytes> {
        self.ready.iter().map(|job| job.body.clone()).collect()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            ready: self.ready.len(),
            delayed: self.delayed.len(),
            processed: self.processed,
            failed: self.failed,
            open: self.open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, uniq: Option<&str>) -> Job {
        Job {
            id: JobId(id),
            body: Bytes::from(format!("{{\"n\":{id}}}")),
            uniq: uniq.map(Arc::from),
        }
    }

    fn ids(jobs: &[Job]) -> Vec<u64> {
        jobs.iter().map(|j| j.id.0).collect()
    }

    fn enqueue(state: &mut QueueState, jobs: Vec<Job>) {
        state.apply(Change::Enqueued { jobs, due_ms: None });
    }

    #[test]
    fn fifo_order() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        enqueue(&mut q, vec![job(3, None)]);
        assert_eq!(ids(&q.apply(Change::Taken { count: 2 })), vec![1, 2]);
        assert_eq!(ids(&q.apply(Change::Taken { count: 5 })), vec![3]);
        assert!(q.apply(Change::Taken { count: 1 }).is_empty());
        assert_eq!(q.counters().processed, 3);
    }

    #[test]
    fn uniq_key_held_while_waiting_and_freed_on_fetch() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k"))]);
        assert!(q.holds_uniq("k"));
        q.apply(Change::Taken { count: 1 });
        assert!(!q.holds_uniq("k"));
    }

    #[test]
    fn delayed_uniq_key_is_held() {
        let mut q = QueueState::default();
        q.apply(Change::Enqueued {
            jobs: vec![job(1, Some("k"))],
            due_ms: Some(5_000),
        });
        assert!(q.holds_uniq("k"));
        assert_eq!(q.counters().ready, 0);
        assert_eq!(q.counters().delayed, 1);
    }

    #[test]
    fn promotion_respects_due_time_and_goes_to_head() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(2, None)],
            due_ms: Some(2_000),
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(1_000),
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(4, None)],
            due_ms: Some(3_000),
        });
        assert!(!q.has_due(999));
        q.apply(Change::Promoted { now_ms: 999 });
        assert_eq!(q.ready_len(), 1);
        assert!(q.has_due(2_000));
        q.apply(Change::Promoted { now_ms: 2_000 });
        assert_eq!(q.next_due_ms(), Some(3_000));
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![3, 2, 1]);
    }

    #[test]
    fn later_promotions_queue_behind_earlier_ones() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(1_000),
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(4, None)],
            due_ms: Some(2_000),
        });
        q.apply(Change::Promoted { now_ms: 1_000 });
        q.apply(Change::Promoted { now_ms: 2_000 });
        assert_eq!(ids(&q.apply(Change::Taken { count: 1 })), vec![3]);
        q.apply(Change::Enqueued {
            jobs: vec![job(5, None)],
            due_ms: Some(3_000),
        });
        q.apply(Change::Promoted { now_ms: 3_000 });
        assert_eq!(ids(&q.apply(Change::Taken { count: 10 })), vec![4, 5, 1, 2]);
    }

    #[test]
    fn returned_jobs_go_back_to_head_with_keys_and_counts() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("a")), job(2, None), job(3, None)]);
        let taken = q.apply(Change::Taken { count: 2 });
        assert!(!q.holds_uniq("a"));
        q.apply(Change::Returned { jobs: taken });
        assert!(q.holds_uniq("a"));
        assert_eq!(q.counters().processed, 0);
        assert_eq!(ids(&q.apply(Change::Taken { count: 3 })), vec![1, 2, 3]);
    }

    #[test]
    fn image_round_trips_through_cbor() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("a")), job(2, None)]);
        q.apply(Change::Enqueued {
            jobs: vec![job(3, Some("d"))],
            due_ms: Some(9_000),
        });
        q.apply(Change::FailureCounted);
        q.apply(Change::OpenSet(false));
        let image = q.image();
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&image, &mut bytes).is_ok());
        let back: QueueImage = ciborium::from_reader(&bytes[..])
            .ok()
            .unwrap_or_else(|| QueueState::default().image());
        assert_eq!(back, image);
        let restored = QueueState::from_image(back);
        assert!(restored.holds_uniq("a") && restored.holds_uniq("d"));
        assert_eq!(restored.counters(), q.counters());
        assert_eq!(restored.max_job_id(), Some(3));
    }

    #[test]
    fn image_is_isolated_from_later_changes() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        let image = q.image();
        q.apply(Change::Taken { count: 2 });
        enqueue(&mut q, vec![job(3, None)]);
        assert_eq!(image.ready.len(), 2);
        assert_eq!(image.ready[0].id, JobId(1));
    }

    #[test]
    fn jobs_returned_out_of_order_regain_fifo_order() {
        let mut q = QueueState::default();
        enqueue(&mut q, (1..=5).map(|i| job(i, None)).collect());
        let a = q.apply(Change::Taken { count: 1 });
        let b = q.apply(Change::Taken { count: 1 });
        let c = q.apply(Change::Taken { count: 1 });
        q.apply(Change::Returned { jobs: b });
        q.apply(Change::Returned { jobs: c });
        q.apply(Change::Returned { jobs: a });
        assert_eq!(
            ids(&q.apply(Change::Taken { count: 5 })),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn counters_and_open_flag() {
        let mut q = QueueState::default();
        assert!(q.is_open());
        q.apply(Change::OpenSet(false));
        q.apply(Change::FailureCounted);
        let c = q.counters();
        assert!(!c.open);
        assert_eq!(c.failed, 1);
    }
}
