//! A queue's ready jobs: one FIFO level per priority in use, the most urgent first.
//!
//! Each level is what a whole queue was before priorities: a head of jobs put ahead of
//! the FIFO order (due delayed jobs, jobs put back: see [`Head`]) and behind it the
//! jobs in arrival order. So every ordering rule of a queue holds within each level,
//! and a fetch takes from the most urgent level that has a job.
//!
//! The level of [`DEFAULT_PRIORITY`] is always there, held inline: a queue whose jobs
//! all have the default priority (every queue of a client that never gives one) pays
//! one comparison per operation and not a byte for levels. Other levels come into being
//! when a job of their priority arrives and go when they run empty, in a small vector
//! sorted by priority, so a queue pays only for the priorities it holds right now.

use std::cmp::Ordering;

use imbl::Vector;

use super::head::Head;
use crate::queue::job::{Job, DEFAULT_PRIORITY};

/// The ready jobs of one priority.
#[derive(Debug, Default)]
struct Level {
    /// Jobs put ahead of the FIFO order, in a tree that finds a returned job's place
    /// and puts it there in O(log n).
    head: Head,
    /// The jobs behind the head, in FIFO order.
    rest: Vector<Job>,
}

impl Level {
    fn len(&self) -> usize {
        self.head.len() + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty() && self.head.len() == 0
    }

    fn pop(&mut self, count: usize) -> Vec<Job> {
        let count = count.min(self.len());
        let mut taken = self.head.pop_front(count);
        taken.reserve(count.saturating_sub(taken.len()));
        while taken.len() < count {
            match self.rest.pop_front() {
                Some(job) => taken.push(job),
                None => break,
            }
        }
        taken
    }

    fn iter(&self) -> impl Iterator<Item = &Job> {
        self.head.iter().chain(self.rest.iter())
    }

    /// The level's jobs as one vector, head first: a copy of the head (normally a
    /// handful of jobs), the many jobs behind it shared, not copied.
    fn image(&self) -> Vector<Job> {
        let mut jobs: Vector<Job> = self.head.iter().cloned().collect();
        jobs.append(self.rest.clone());
        jobs
    }
}

/// The ready jobs of a queue, by priority.
#[derive(Debug, Default)]
pub struct Ready {
    /// The level of [`DEFAULT_PRIORITY`].
    default: Level,
    /// The other priorities that have ready jobs, most urgent first; never empty ones.
    others: Vec<(u8, Level)>,
}

impl Ready {
    /// Number of ready jobs.
    pub fn len(&self) -> usize {
        self.default.len() + self.others.iter().map(|(_, l)| l.len()).sum::<usize>()
    }

    /// At the tail of its priority: a new job, or one failed back to the queue.
    pub fn push_back(&mut self, job: Job) {
        self.level_mut(job.priority).rest.push_back(job);
    }

    /// At the end of its priority's head: a due delayed job, ahead of every job that
    /// arrived in FIFO order but behind the due jobs before it.
    pub fn promote(&mut self, job: Job) {
        let head = &mut self.level_mut(job.priority).head;
        head.insert(head.len(), job);
    }

    /// Back where it was taken from, within its priority: before the first head job
    /// with a larger id, else at the end of the head, so jobs coming back in any order
    /// keep FIFO order among themselves. The head tree finds that place in O(log n).
    pub fn put_back(&mut self, job: Job) {
        let head = &mut self.level_mut(job.priority).head;
        let at = head.first_greater(job.id.0);
        head.insert(at, job);
    }

    /// Takes up to `count` jobs in fetch order: the most urgent level's first.
    pub fn pop(&mut self, count: usize) -> Vec<Job> {
        if self.others.is_empty() {
            return self.default.pop(count);
        }
        let urgent = self.urgent_levels();
        let mut taken: Vec<Job> = Vec::new();
        for i in 0..=self.others.len() {
            let left = count.saturating_sub(taken.len());
            if left == 0 {
                break;
            }
            let level = match i.cmp(&urgent) {
                Ordering::Less => self.others.get_mut(i).map(|(_, l)| l),
                Ordering::Equal => Some(&mut self.default),
                Ordering::Greater => self.others.get_mut(i - 1).map(|(_, l)| l),
            };
            let Some(level) = level else { break };
            let mut jobs = level.pop(left);
            if taken.is_empty() {
                taken = jobs;
            } else {
                taken.append(&mut jobs);
            }
        }
        self.others.retain(|(_, level)| !level.is_empty());
        taken
    }

    /// Keeps only the jobs `keep` takes, in their order (the sweep of jobs whose ttl
    /// ran out): O(ready jobs), and the heads rebuilt.
    pub fn retain(&mut self, keep: impl Fn(&Job) -> bool) {
        let levels = std::iter::once(&mut self.default)
            .chain(self.others.iter_mut().map(|(_, level)| level));
        for level in levels {
            let head: Vec<Job> = level.head.iter().filter(|job| keep(job)).cloned().collect();
            level.head = Head::from_jobs(head);
            level.rest = level.rest.iter().filter(|job| keep(job)).cloned().collect();
        }
        self.others.retain(|(_, level)| !level.is_empty());
    }

    /// The jobs in fetch order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        let (urgent, later) = self.others.split_at(self.urgent_levels());
        urgent
            .iter()
            .map(|(_, level)| level)
            .chain(std::iter::once(&self.default))
            .chain(later.iter().map(|(_, level)| level))
            .flat_map(Level::iter)
    }

    /// The jobs in fetch order, the default level's head length and the other levels'
    /// (those that have a head): what a queue's image keeps of them.
    pub fn image(&self) -> (Vector<Job>, usize, Vec<(u8, usize)>) {
        let head_len = self.default.head.len();
        if self.others.is_empty() {
            return (self.default.image(), head_len, Vec::new());
        }
        let (urgent, later) = self.others.split_at(self.urgent_levels());
        let mut jobs = Vector::new();
        for (_, level) in urgent {
            jobs.append(level.image());
        }
        jobs.append(self.default.image());
        for (_, level) in later {
            jobs.append(level.image());
        }
        let heads = self
            .others
            .iter()
            .filter(|(_, level)| level.head.len() > 0)
            .map(|(priority, level)| (*priority, level.head.len()))
            .collect();
        (jobs, head_len, heads)
    }

    /// The ready jobs an image holds: `jobs` in fetch order, the first `head_len` of
    /// the default priority's (and `heads[p]` of priority p's) being that level's
    /// head. A queue of one priority is split in O(log n), sharing the image's jobs.
    pub fn from_image(mut jobs: Vector<Job>, head_len: usize, heads: &[(u8, usize)]) -> Self {
        let mut ready = Ready::default();
        while let Some(priority) = jobs.front().map(|job| job.priority) {
            // Fetch order is priority order: when the last job has the first one's
            // priority, so has every job between them.
            let run = if jobs.back().map(|job| job.priority) == Some(priority) {
                jobs.len()
            } else {
                jobs.iter()
                    .take_while(|job| job.priority == priority)
                    .count()
            };
            let after = jobs.split_off(run);
            let mut run = std::mem::replace(&mut jobs, after);
            let head_len = if priority == DEFAULT_PRIORITY {
                head_len
            } else {
                heads
                    .iter()
                    .find(|(p, _)| *p == priority)
                    .map_or(0, |(_, len)| *len)
            };
            let level = ready.level_mut(priority);
            if level.is_empty() {
                let rest = run.split_off(head_len.min(run.len()));
                level.head = Head::from_jobs(run);
                level.rest = rest;
            } else {
                // Out of priority order (no image is written so): behind its level.
                level.rest.append(run);
            }
        }
        ready
    }

    /// Whether the default priority's is the only level.
    #[cfg(test)]
    pub fn is_single_level(&self) -> bool {
        self.others.is_empty()
    }

    /// Head nodes visited so far, over every level.
    #[cfg(test)]
    pub fn steps(&self) -> u64 {
        self.default.head.steps()
            + self
                .others
                .iter()
                .map(|(_, level)| level.head.steps())
                .sum::<u64>()
    }

    /// How many of the other levels come before the default one.
    fn urgent_levels(&self) -> usize {
        self.others.partition_point(|(p, _)| *p < DEFAULT_PRIORITY)
    }

    /// The level of `priority`, created if the queue has no job of it yet.
    fn level_mut(&mut self, priority: u8) -> &mut Level {
        if priority == DEFAULT_PRIORITY {
            return &mut self.default;
        }
        let at = match self.others.binary_search_by_key(&priority, |(p, _)| *p) {
            Ok(at) => at,
            Err(at) => {
                self.others.insert(at, (priority, Level::default()));
                at
            }
        };
        &mut self.others[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::job::JobId;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn job(id: u64, priority: u8) -> Job {
        Job {
            id: JobId(id),
            body: Bytes::new(),
            uniq: None,
            priority,
        }
    }

    /// The definition the levels must agree with: one plain list of (priority, id)
    /// per priority with its head length, kept by scans.
    #[derive(Default)]
    struct Model(std::collections::BTreeMap<u8, (usize, Vec<u64>)>);

    impl Model {
        fn level(&mut self, p: u8) -> &mut (usize, Vec<u64>) {
            self.0.entry(p).or_default()
        }
        fn order(&self) -> Vec<(u8, u64)> {
            self.0
                .iter()
                .flat_map(|(p, (_, ids))| ids.iter().map(move |id| (*p, *id)))
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64, u8),
        Promote(u64, u8),
        PutBack(u64, u8),
        Pop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = prop_oneof![Just(DEFAULT_PRIORITY), 0u8..4, Just(255u8)];
        prop_oneof![
            (0u64..100, p.clone()).prop_map(|(id, p)| Op::Push(id, p)),
            (0u64..100, p.clone()).prop_map(|(id, p)| Op::Promote(id, p)),
            (0u64..100, p).prop_map(|(id, p)| Op::PutBack(id, p)),
            (0usize..6).prop_map(Op::Pop),
        ]
    }

    fn listed(ready: &Ready) -> Vec<(u8, u64)> {
        ready.iter().map(|j| (j.priority, j.id.0)).collect()
    }

    proptest! {
        #[test]
        fn agrees_with_one_list_per_priority(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ready = Ready::default();
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Push(id, p) => {
                        ready.push_back(job(id, p));
                        model.level(p).1.push(id);
                    }
                    Op::Promote(id, p) => {
                        ready.promote(job(id, p));
                        let (head, ids) = model.level(p);
                        ids.insert(*head, id);
                        *head += 1;
                    }
                    Op::PutBack(id, p) => {
                        ready.put_back(job(id, p));
                        let (head, ids) = model.level(p);
                        let at = ids[..*head].iter().position(|&x| x > id).unwrap_or(*head);
                        ids.insert(at, id);
                        *head += 1;
                    }
                    Op::Pop(n) => {
                        let want: Vec<(u8, u64)> = model.order().into_iter().take(n).collect();
                        for (p, _) in &want {
                            let (head, ids) = model.level(*p);
                            ids.remove(0);
                            *head = head.saturating_sub(1);
                        }
                        model.0.retain(|_, (_, ids)| !ids.is_empty());
                        let got: Vec<(u8, u64)> =
                            ready.pop(n).iter().map(|j| (j.priority, j.id.0)).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(ready.len(), model.order().len());
                prop_assert_eq!(listed(&ready), model.order());
            }
            let (jobs, head_len, heads) = ready.image();
            let back = Ready::from_image(jobs, head_len, &heads);
            prop_assert_eq!(listed(&back), listed(&ready));
            prop_assert_eq!(back.image(), ready.image());
        }
    }
}
