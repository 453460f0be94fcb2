//! One queue's state and the only code that changes it.
//!
//! Every mutation is a [`Change`] passed to [`QueueState::apply`]. That single door is
//! the seam persistence hangs on: a change is logged before it is applied, and the same
//! `apply` replays the log at recovery. Checks that can refuse a request (duplicate
//! `uniq`, closed queue, nothing ready, unknown lease) are read-only methods the actor
//! calls first, and every decision that depends on something outside the state (the
//! clock, the server's default `max_attempts`) travels inside the change, so `apply`
//! never fails and replaying never diverges.

use std::collections::HashSet;
use std::sync::Arc;

#[cfg(test)]
use bytes::Bytes;
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use crate::queue::job::{Job, JobId};

use super::head::Head;

/// A change to a queue. Deterministic given the state it applies to, so the log can
/// record it and recovery can replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Jobs appended at the tail, or (with `due_ms`) held until that time.
    Enqueued { jobs: Vec<Job>, due_ms: Option<u64> },
    /// Delayed jobs due at or before `now_ms` move to the head, earliest first, at most
    /// `limit` of them (all with `None`), so a mass of jobs coming due at once is
    /// moved in steps that let other requests through; replay moves the same ones.
    Promoted {
        now_ms: u64,
        #[serde(default)]
        limit: Option<usize>,
    },
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
    /// Up to `count` jobs leave the head on lease until `deadline_ms`; each counts as
    /// processed. They stay in flight until acked, failed or expired.
    Leased {
        count: usize,
        deadline_ms: u64,
        worker: Option<Arc<str>>,
    },
    /// Leased jobs never delivered (the client left) return to the head, as if never
    /// handed out: no attempt is counted.
    LeaseReleased { ids: Vec<JobId> },
    /// A leased job is done: it leaves the queue.
    Acked { id: JobId },
    /// A leased job failed: one failure and one attempt are counted, and it goes back
    /// to the tail (or is delayed until `due_ms`), or to the dead letters once its
    /// attempts reach `max_attempts`.
    Failed {
        id: JobId,
        due_ms: Option<u64>,
        max_attempts: u32,
    },
    /// A lease now runs until `deadline_ms`.
    Extended { id: JobId, deadline_ms: u64 },
    /// Leases whose deadline is at or before `now_ms` run out, earliest first, at most
    /// `limit` of them (all with `None`, as in records written before the limit
    /// existed): each counts an attempt and its job goes back to the head, or to the
    /// dead letters at `max_attempts`. The limit is part of the change so that replay
    /// expires exactly the leases the running queue did.
    LeasesExpired {
        now_ms: u64,
        max_attempts: u32,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The queue's own `max_attempts` (`None`: the server's default).
    MaxAttemptsSet(Option<u32>),
    /// Dead jobs (one, or all) go back to the tail with their attempts reset.
    DeadRetried { id: Option<JobId> },
    /// Dead jobs (one, or all) are dropped.
    DeadPurged { id: Option<JobId> },
}

/// The counters the routes report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub ready: usize,
    pub delayed: usize,
    pub leased: usize,
    pub dead: usize,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
}

/// A job handed out on lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: Job,
    pub deadline_ms: u64,
    pub worker: Option<Arc<str>>,
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadJob {
    pub job: Job,
    pub attempts: u32,
}

/// Where a job is and how it has fared (`GET /q/NAME/ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub state: JobState,
    pub attempts: u32,
    pub lease_deadline_ms: Option<u64>,
    pub due_ms: Option<u64>,
    pub worker: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Ready,
    Delayed,
    Leased,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Delayed => "delayed",
            JobState::Leased => "leased",
            JobState::Dead => "dead",
        }
    }
}

/// Everything a queue holds, as persistent collections: cloning it is O(1), which is
/// how a snapshot takes a consistent image without stalling the queue. `uniq` keys are
/// not stored: they are exactly the keys of the waiting and leased jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueImage {
    pub ready: Vector<Job>,
    /// How many jobs at the front of `ready` were put there ahead of the FIFO order
    /// (due delayed jobs, returned jobs): later promotions queue up behind them, so
    /// due jobs keep their due-time order among themselves.
    pub head_len: usize,
    /// Keyed by (due time, id) so equal due times keep their creation order.
    pub delayed: OrdMap<(u64, JobId), Job>,
    pub processed: u64,
    pub failed: u64,
    pub open: bool,
    #[serde(default)]
    pub leased: OrdMap<JobId, Lease>,
    /// Failed deliveries so far, for jobs that have had any.
    #[serde(default)]
    pub attempts: OrdMap<JobId, u32>,
    #[serde(default)]
    pub dead: OrdMap<JobId, DeadJob>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

impl Default for QueueImage {
    fn default() -> Self {
        QueueImage {
            ready: Vector::new(),
            head_len: 0,
            delayed: OrdMap::new(),
            processed: 0,
            failed: 0,
            open: true,
            leased: OrdMap::new(),
            attempts: OrdMap::new(),
            dead: OrdMap::new(),
            max_attempts: None,
        }
    }
}

/// A queue: its image plus the indexes derived from it.
#[derive(Debug, Default)]
pub struct QueueState {
    /// Everything but the ready jobs, which live in `head` and `rest`: here `q.ready`
    /// stays empty and `q.head_len` zero, and [`QueueState::image`] joins them back.
    q: QueueImage,
    /// The first `head_len` ready jobs (due jobs promoted, jobs put back), in a tree
    /// that finds a returned job's place and puts it there in O(log n).
    head: Head,
    /// The ready jobs behind the head, in FIFO order.
    rest: Vector<Job>,
    /// `uniq` keys of waiting and leased jobs.
    uniq: HashSet<Arc<str>>,
    /// Lease deadlines in time order, for the expiry timer.
    deadlines: OrdSet<(u64, JobId)>,
}

impl QueueState {
    /// Applies one change. The only method that mutates the queue; returns the jobs a
    /// [`Change::Taken`] or [`Change::Leased`] handed out (empty for other changes).
    ///
    /// One arm per change, each a method below, in the order the changes are declared.
    pub fn apply(&mut self, change: Change) -> Vec<Job> {
        match change {
            Change::Enqueued { jobs, due_ms } => self.enqueue(jobs, due_ms),
            Change::Promoted { now_ms, limit } => self.promote(now_ms, limit),
            Change::Taken { count } => return self.take(count),
            Change::Returned { jobs } => self.take_back(jobs),
            Change::FailureCounted => self.count_failure(),
            Change::OpenSet(open) => self.set_open(open),
            Change::Purged => self.purge(),
            Change::Leased {
                count,
                deadline_ms,
                worker,
            } => return self.lease_out(count, deadline_ms, worker),
            Change::LeaseReleased { ids } => self.release_leases(ids),
            Change::Acked { id } => self.ack(id),
            Change::Failed {
                id,
                due_ms,
                max_attempts,
            } => self.fail(id, due_ms, max_attempts),
            Change::Extended { id, deadline_ms } => self.extend(id, deadline_ms),
            Change::LeasesExpired {
                now_ms,
                max_attempts,
                limit,
            } => self.expire_leases(now_ms, max_attempts, limit),
            Change::MaxAttemptsSet(max) => self.set_max_attempts(max),
            Change::DeadRetried { id } => self.retry_dead(id),
            Change::DeadPurged { id } => self.purge_dead(id),
        }
        Vec::new()
    }

    fn enqueue(&mut self, jobs: Vec<Job>, due_ms: Option<u64>) {
        for job in jobs {
            self.hold_key(&job);
            self.append(job, due_ms);
        }
    }

    /// Earliest due first, each behind the jobs promoted before it: the head keeps
    /// due jobs in due-time order.
    fn promote(&mut self, now_ms: u64, limit: Option<usize>) {
        let mut left = limit.unwrap_or(usize::MAX);
        while let Some(key) = self
            .q
            .delayed
            .get_min()
            .map(|(key, _)| *key)
            .filter(|(due, _)| *due <= now_ms && left > 0)
        {
            left -= 1;
            if let Some(job) = self.q.delayed.remove(&key) {
                self.head.insert(self.head.len(), job);
            }
        }
    }

    /// A fetched job is gone for good: its key is free for a new job, and its
    /// attempts are forgotten.
    fn take(&mut self, count: usize) -> Vec<Job> {
        let taken = self.pop_head(count);
        for job in &taken {
            self.free_key(job);
            self.q.attempts.remove(&job.id);
        }
        taken
    }

    /// Undoes a [`Change::Taken`] whose jobs never reached their fetcher, processed
    /// count included.
    fn take_back(&mut self, jobs: Vec<Job>) {
        self.q.processed = self.q.processed.saturating_sub(jobs.len() as u64);
        for job in jobs {
            self.hold_key(&job);
            self.put_back(job);
        }
    }

    fn count_failure(&mut self) {
        self.q.failed += 1;
    }

    fn set_open(&mut self, open: bool) {
        self.q.open = open;
    }

    fn purge(&mut self) {
        *self = QueueState::default();
    }

    /// Leased jobs keep their `uniq` keys: they may still come back.
    fn lease_out(&mut self, count: usize, deadline_ms: u64, worker: Option<Arc<str>>) -> Vec<Job> {
        let taken = self.pop_head(count);
        for job in &taken {
            self.deadlines.insert((deadline_ms, job.id));
            self.q.leased.insert(
                job.id,
                Lease {
                    job: job.clone(),
                    deadline_ms,
                    worker: worker.clone(),
                },
            );
        }
        taken
    }

    /// Undoes a [`Change::Leased`] whose jobs never reached their fetcher: no attempt
    /// is counted, since no worker ever saw them.
    fn release_leases(&mut self, ids: Vec<JobId>) {
        for id in ids {
            if let Some(lease) = self.end_lease(id) {
                self.q.processed = self.q.processed.saturating_sub(1);
                self.put_back(lease.job);
            }
        }
    }

    fn ack(&mut self, id: JobId) {
        if let Some(lease) = self.end_lease(id) {
            self.free_key(&lease.job);
            self.q.attempts.remove(&id);
        }
    }

    fn fail(&mut self, id: JobId, due_ms: Option<u64>, max_attempts: u32) {
        if let Some(lease) = self.end_lease(id) {
            self.q.failed += 1;
            if let Some(job) = self.count_attempt(lease.job, max_attempts) {
                self.append(job, due_ms);
            }
        }
    }

    fn extend(&mut self, id: JobId, deadline_ms: u64) {
        if let Some(lease) = self.q.leased.get_mut(&id) {
            self.deadlines.remove(&(lease.deadline_ms, id));
            lease.deadline_ms = deadline_ms;
            self.deadlines.insert((deadline_ms, id));
        }
    }

    fn expire_leases(&mut self, now_ms: u64, max_attempts: u32, limit: Option<usize>) {
        let mut left = limit.unwrap_or(usize::MAX);
        while let Some(entry) = self
            .deadlines
            .get_min()
            .copied()
            .filter(|(deadline, _)| *deadline <= now_ms && left > 0)
        {
            left -= 1;
            self.deadlines.remove(&entry);
            if let Some(lease) = self.q.leased.remove(&entry.1) {
                if let Some(job) = self.count_attempt(lease.job, max_attempts) {
                    self.put_back(job);
                }
            }
        }
    }

    fn set_max_attempts(&mut self, max: Option<u32>) {
        self.q.max_attempts = max;
    }

    fn retry_dead(&mut self, id: Option<JobId>) {
        for (id, dead) in self.take_dead(id) {
            self.q.attempts.remove(&id);
            let mut job = dead.job;
            // Its key may have been taken by a newer job meanwhile.
            if job.uniq.as_ref().is_some_and(|k| self.uniq.contains(k)) {
                job.uniq = None;
            }
            self.hold_key(&job);
            self.rest.push_back(job);
        }
    }

    fn purge_dead(&mut self, id: Option<JobId>) {
        for (id, _) in self.take_dead(id) {
            self.q.attempts.remove(&id);
        }
    }

    /// At the tail, or held until `due_ms`.
    fn append(&mut self, job: Job, due_ms: Option<u64>) {
        match due_ms {
            Some(due) => {
                self.q.delayed.insert((due, job.id), job);
            }
            None => self.rest.push_back(job),
        }
    }

    fn hold_key(&mut self, job: &Job) {
        if let Some(key) = &job.uniq {
            self.uniq.insert(key.clone());
        }
    }

    fn free_key(&mut self, job: &Job) {
        if let Some(key) = &job.uniq {
            self.uniq.remove(key);
        }
    }

    fn pop_head(&mut self, count: usize) -> Vec<Job> {
        let count = count.min(self.ready_len());
        let mut taken = self.head.pop_front(count);
        taken.reserve(count.saturating_sub(taken.len()));
        while taken.len() < count {
            match self.rest.pop_front() {
                Some(job) => taken.push(job),
                None => break,
            }
        }
        self.q.processed += taken.len() as u64;
        taken
    }

    /// Back where it was taken from: ahead of younger jobs at the head, so jobs coming
    /// back in any order keep FIFO order among themselves. Precisely: before the first
    /// head job with a larger id, else at the end of the head. The head tree finds
    /// that place in O(log n); a scan of the head per job made a storm of returns
    /// quadratic.
    fn put_back(&mut self, job: Job) {
        let at = self.head.first_greater(job.id.0);
        self.head.insert(at, job);
    }

    fn end_lease(&mut self, id: JobId) -> Option<Lease> {
        let lease = self.q.leased.remove(&id)?;
        self.deadlines.remove(&(lease.deadline_ms, id));
        Some(lease)
    }

    /// Counts a failed delivery; returns the job unless it just died.
    fn count_attempt(&mut self, job: Job, max_attempts: u32) -> Option<Job> {
        let attempts = self.q.attempts.get(&job.id).copied().unwrap_or(0) + 1;
        self.q.attempts.insert(job.id, attempts);
        if attempts >= max_attempts {
            self.free_key(&job);
            self.q.dead.insert(job.id, DeadJob { job, attempts });
            None
        } else {
            Some(job)
        }
    }

    fn take_dead(&mut self, id: Option<JobId>) -> Vec<(JobId, DeadJob)> {
        match id {
            Some(id) => self
                .q
                .dead
                .remove(&id)
                .map(|d| (id, d))
                .into_iter()
                .collect(),
            None => std::mem::take(&mut self.q.dead).into_iter().collect(),
        }
    }

    /// Whether a job holding `key` is still waiting or leased.
    pub fn holds_uniq(&self, key: &str) -> bool {
        self.uniq.contains(key)
    }

    /// Whether fetching is allowed.
    pub fn is_open(&self) -> bool {
        self.q.open
    }

    /// Number of jobs ready to fetch.
    pub fn ready_len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    /// The due time of the earliest delayed job.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.q.delayed.get_min().map(|((due, _), _)| *due)
    }

    /// Whether some delayed job is due at `now_ms`.
    pub fn has_due(&self, now_ms: u64) -> bool {
        self.next_due_ms().is_some_and(|due| due <= now_ms)
    }

    /// The earliest lease deadline.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.get_min().map(|(deadline, _)| *deadline)
    }

    /// Whether some lease has run out at `now_ms`.
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.next_deadline_ms().is_some_and(|d| d <= now_ms)
    }

    /// The queue's own `max_attempts` setting, if any.
    pub fn max_attempts(&self) -> Option<u32> {
        self.q.max_attempts
    }

    /// The lease on a job, if it is leased.
    pub fn lease(&self, id: JobId) -> Option<&Lease> {
        self.q.leased.get(&id)
    }

    /// Every lease, by job id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.q.leased.values()
    }

    /// Whether dead job `id` (or any, with `None`) exists.
    pub fn has_dead(&self, id: Option<JobId>) -> bool {
        match id {
            Some(id) => self.q.dead.contains_key(&id),
            None => !self.q.dead.is_empty(),
        }
    }

    /// The dead jobs, oldest id first.
    pub fn dead(&self) -> impl Iterator<Item = &DeadJob> {
        self.q.dead.values()
    }

    /// Where job `id` is. Ready and delayed jobs are found by a scan: lookups are rare
    /// and an index would cost every enqueue and fetch.
    pub fn find(&self, id: JobId) -> Option<JobInfo> {
        let attempts = self.q.attempts.get(&id).copied().unwrap_or(0);
        let info = |state, lease_deadline_ms, due_ms, worker| JobInfo {
            state,
            attempts,
            lease_deadline_ms,
            due_ms,
            worker,
        };
        if let Some(lease) = self.q.leased.get(&id) {
            return Some(info(
                JobState::Leased,
                Some(lease.deadline_ms),
                None,
                lease.worker.clone(),
            ));
        }
        if let Some(dead) = self.q.dead.get(&id) {
            return Some(JobInfo {
                attempts: dead.attempts,
                ..info(JobState::Dead, None, None, None)
            });
        }
        if self.ready_jobs().any(|job| job.id == id) {
            return Some(info(JobState::Ready, None, None, None));
        }
        self.q
            .delayed
            .keys()
            .find(|(_, job)| *job == id)
            .map(|(due, _)| info(JobState::Delayed, None, Some(*due), None))
    }

    /// The ready jobs' bodies in queue order.
    #[cfg(test)]
    pub fn ready_bodies(&self) -> Vec<Bytes> {
        self.ready_jobs().map(|job| job.body.clone()).collect()
    }

    /// The ready jobs in queue order.
    pub fn ready_jobs(&self) -> impl Iterator<Item = &Job> {
        self.head.iter().chain(self.rest.iter())
    }

    pub fn counters(&self) -> Counters {
        Counters {
            ready: self.ready_len(),
            delayed: self.q.delayed.len(),
            leased: self.q.leased.len(),
            dead: self.q.dead.len(),
            processed: self.q.processed,
            failed: self.q.failed,
            open: self.q.open,
        }
    }

    /// A consistent image of the queue: O(1) clones, plus a copy of the head (normally
    /// a handful of jobs; the many jobs behind it are shared, not copied).
    pub fn image(&self) -> QueueImage {
        let mut ready: Vector<Job> = self.head.iter().cloned().collect();
        ready.append(self.rest.clone());
        QueueImage {
            ready,
            head_len: self.head.len(),
            ..self.q.clone()
        }
    }

    /// The queue an image was taken of.
    pub fn from_image(mut image: QueueImage) -> Self {
        let uniq = image
            .ready
            .iter()
            .chain(image.delayed.values())
            .chain(image.leased.values().map(|l| &l.job))
            .filter_map(|job| job.uniq.clone())
            .collect();
        let deadlines = image
            .leased
            .iter()
            .map(|(id, lease)| (lease.deadline_ms, *id))
            .collect();
        let mut rest = std::mem::take(&mut image.ready);
        let head = rest.slice(..image.head_len.min(rest.len()));
        image.head_len = 0;
        QueueState {
            q: image,
            head: Head::from_jobs(head),
            rest,
            uniq,
            deadlines,
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
        q.apply(Change::Promoted {
            now_ms: 999,
            limit: None,
        });
        assert_eq!(q.ready_len(), 1);
        assert!(q.has_due(2_000));
        q.apply(Change::Promoted {
            now_ms: 2_000,
            limit: None,
        });
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
        q.apply(Change::Promoted {
            now_ms: 1_000,
            limit: None,
        });
        q.apply(Change::Promoted {
            now_ms: 2_000,
            limit: None,
        });
        assert_eq!(ids(&q.apply(Change::Taken { count: 1 })), vec![3]);
        q.apply(Change::Enqueued {
            jobs: vec![job(5, None)],
            due_ms: Some(3_000),
        });
        q.apply(Change::Promoted {
            now_ms: 3_000,
            limit: None,
        });
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
        assert_eq!(restored.image(), q.image());
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

    fn lease(q: &mut QueueState, count: usize, deadline_ms: u64) -> Vec<u64> {
        ids(&q.apply(Change::Leased {
            count,
            deadline_ms,
            worker: Some("w".into()),
        }))
    }

    #[test]
    fn a_leased_job_is_in_flight_until_acked() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        assert_eq!(lease(&mut q, 1, 1_000), vec![1]);
        let c = q.counters();
        assert_eq!((c.ready, c.leased, c.processed), (1, 1, 1));
        // Its key stays held while it may still come back.
        assert!(q.holds_uniq("k"));
        assert_eq!(q.find(JobId(1)).map(|i| i.state), Some(JobState::Leased));
        q.apply(Change::Acked { id: JobId(1) });
        assert!(!q.holds_uniq("k"));
        assert_eq!(q.find(JobId(1)), None);
        assert_eq!(q.counters().leased, 0);
    }

    #[test]
    fn expired_leases_go_back_to_the_head_then_die() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        for attempt in 1..=2 {
            assert_eq!(lease(&mut q, 1, 1_000 * attempt), vec![1]);
            assert!(!q.has_expired(1_000 * attempt - 1));
            assert!(q.has_expired(1_000 * attempt));
            q.apply(Change::LeasesExpired {
                now_ms: 1_000 * attempt,
                max_attempts: 3,
                limit: None,
            });
            let info = q.find(JobId(1));
            assert_eq!(
                info.map(|i| (i.state, i.attempts)),
                Some((JobState::Ready, attempt as u32))
            );
        }
        assert_eq!(lease(&mut q, 1, 5_000), vec![1]);
        q.apply(Change::LeasesExpired {
            now_ms: 5_000,
            max_attempts: 3,
            limit: None,
        });
        assert_eq!(
            q.find(JobId(1)).map(|i| (i.state, i.attempts)),
            Some((JobState::Dead, 3))
        );
        assert!(!q.holds_uniq("k"));
        assert_eq!(ids(&q.apply(Change::Taken { count: 5 })), vec![2]);
        q.apply(Change::DeadRetried { id: None });
        assert_eq!(
            q.find(JobId(1)).map(|i| (i.state, i.attempts)),
            Some((JobState::Ready, 0))
        );
        assert!(q.holds_uniq("k"));
    }

    #[test]
    fn failed_leases_count_and_requeue_or_delay() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None)]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: None,
            max_attempts: 5,
        });
        assert_eq!(q.counters().failed, 1);
        // Back at the tail.
        assert_eq!(ids(&q.apply(Change::Taken { count: 1 })), vec![2]);
        lease(&mut q, 1, 1_000);
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: Some(9_000),
            max_attempts: 5,
        });
        let info = q.find(JobId(1));
        assert_eq!(
            info.map(|i| (i.state, i.attempts, i.due_ms)),
            Some((JobState::Delayed, 2, Some(9_000)))
        );
    }

    #[test]
    fn extended_released_and_purged_dead() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(3, None)]);
        lease(&mut q, 2, 1_000);
        q.apply(Change::Extended {
            id: JobId(1),
            deadline_ms: 9_000,
        });
        assert_eq!(q.next_deadline_ms(), Some(1_000));
        q.apply(Change::LeaseReleased {
            ids: vec![JobId(2)],
        });
        assert_eq!(q.next_deadline_ms(), Some(9_000));
        let c = q.counters();
        assert_eq!((c.ready, c.leased, c.processed), (2, 1, 1));
        assert_eq!(q.find(JobId(2)).map(|i| i.attempts), Some(0));
        q.apply(Change::Failed {
            id: JobId(1),
            due_ms: None,
            max_attempts: 1,
        });
        assert!(q.has_dead(Some(JobId(1))));
        q.apply(Change::DeadPurged { id: Some(JobId(1)) });
        assert!(!q.has_dead(None));
    }

    #[test]
    fn leases_survive_an_image_round_trip() {
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, Some("k")), job(2, None)]);
        lease(&mut q, 1, 7_000);
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(&q.image(), &mut bytes).is_ok());
        let image: Option<QueueImage> = ciborium::from_reader(&bytes[..]).ok();
        let back = QueueState::from_image(image.unwrap_or_default());
        assert_eq!(back.next_deadline_ms(), Some(7_000));
        assert!(back.holds_uniq("k"));
        assert_eq!(
            back.lease(JobId(1)).map(|l| l.worker.clone()),
            Some(Some("w".into()))
        );
    }

    /// `n` leased jobs (ids 1..=n, one deadline) with `tail` ready jobs behind them.
    fn leased_storm(n: u64, tail: u64) -> QueueState {
        let mut q = QueueState::default();
        enqueue(&mut q, (1..=n + tail).map(|i| job(i, None)).collect());
        lease(&mut q, n as usize, 1_000);
        q
    }

    fn expire(q: &mut QueueState, limit: Option<usize>) {
        q.apply(Change::LeasesExpired {
            now_ms: 1_000,
            max_attempts: 5,
            limit,
        });
    }

    #[test]
    fn a_lease_storm_comes_back_in_order_with_attempts_counted() {
        let (n, tail) = (100_000, 3);
        let mut at_once = leased_storm(n, tail);
        expire(&mut at_once, None);
        assert!(!at_once.has_expired(u64::MAX));
        let c = at_once.counters();
        assert_eq!((c.ready, c.leased), ((n + tail) as usize, 0));
        assert_eq!(at_once.find(JobId(n / 2)).map(|i| i.attempts), Some(1));

        // In bounded steps, as the actor does it: the same queue at the end.
        let mut in_steps = leased_storm(n, tail);
        let mut steps = 0;
        while in_steps.has_expired(1_000) {
            expire(&mut in_steps, Some(4_096));
            steps += 1;
        }
        assert_eq!(steps, n.div_ceil(4_096));
        assert_eq!(in_steps.image(), at_once.image());

        let all = ids(&at_once.apply(Change::Taken { count: usize::MAX }));
        assert_eq!(all, (1..=n + tail).collect::<Vec<_>>());
    }

    #[test]
    fn returns_keep_their_place_among_promoted_jobs() {
        // Head [5, 3] (promoted in due order), tail [7].
        let mut q = QueueState::default();
        enqueue(&mut q, vec![job(1, None), job(2, None), job(4, None)]);
        lease(&mut q, 3, 1_000);
        q.apply(Change::Enqueued {
            jobs: vec![job(5, None)],
            due_ms: Some(10),
        });
        q.apply(Change::Enqueued {
            jobs: vec![job(3, None)],
            due_ms: Some(20),
        });
        enqueue(&mut q, vec![job(7, None)]);
        q.apply(Change::Promoted {
            now_ms: 20,
            limit: None,
        });
        // 4 goes before 5 (the first larger id), 1 and 2 before 4; nothing moves 3.
        expire(&mut q, None);
        let back = QueueState::from_image(q.image());
        assert_eq!(
            ids(&q.apply(Change::Taken { count: 10 })),
            vec![1, 2, 4, 5, 3, 7]
        );
        // A queue rebuilt from its image indexes the same head.
        let mut back = back;
        back.apply(Change::Returned {
            jobs: vec![job(6, None)],
        });
        assert_eq!(
            ids(&back.apply(Change::Taken { count: 10 })),
            vec![1, 2, 4, 5, 3, 6, 7]
        );
    }

    /// Counted, not timed (timings belong in benchmarks): putting expired jobs back
    /// visits about 3 log2(n) nodes of the head's tree a job, so twice the leases cost
    /// barely more a job; the old scan of the head looked at n/2 jobs a job.
    #[test]
    fn a_lease_storm_is_not_quadratic() {
        let per_job = |n: u64| {
            let mut q = leased_storm(n, 10);
            let before = q.head.steps();
            expire(&mut q, None);
            assert_eq!(q.counters().ready, (n + 10) as usize);
            (q.head.steps() - before) / n
        };
        let (half, full) = (per_job(50_000), per_job(100_000));
        assert!(full < 120, "{full} steps a job for 100,000");
        assert!(
            full <= half + 10,
            "{half} steps a job for 50,000, {full} for 100,000"
        );
    }

    #[test]
    fn promotion_in_bounded_steps_keeps_due_order() {
        let fill = |q: &mut QueueState| {
            for i in 1..=10u64 {
                q.apply(Change::Enqueued {
                    jobs: vec![job(i, None)],
                    due_ms: Some(100 + (i % 3)),
                });
            }
        };
        let (mut stepped, mut whole) = (QueueState::default(), QueueState::default());
        fill(&mut stepped);
        fill(&mut whole);
        whole.apply(Change::Promoted {
            now_ms: 200,
            limit: None,
        });
        let mut steps = 0;
        while stepped.has_due(200) {
            stepped.apply(Change::Promoted {
                now_ms: 200,
                limit: Some(3),
            });
            steps += 1;
        }
        assert_eq!(steps, 4);
        assert_eq!(stepped.ready_bodies(), whole.ready_bodies());
    }

    #[test]
    fn old_expiry_records_without_a_limit_still_read() {
        #[derive(Serialize)]
        enum Old {
            LeasesExpired { now_ms: u64, max_attempts: u32 },
        }
        let mut bytes = Vec::new();
        let old = Old::LeasesExpired {
            now_ms: 7,
            max_attempts: 3,
        };
        assert!(ciborium::into_writer(&old, &mut bytes).is_ok());
        let read: Option<Change> = ciborium::from_reader(&bytes[..]).ok();
        assert_eq!(
            read,
            Some(Change::LeasesExpired {
                now_ms: 7,
                max_attempts: 3,
                limit: None
            })
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
