//! The jobs at a queue's head, in queue order, indexed so that "where does a returned
//! job go" is answered, and the job put there, in O(log n) rather than by scanning the
//! head (and inserting into the middle of a long persistent vector, which costs tens
//! of microseconds a job).
//!
//! A returned job goes before the first head job with a larger id. The head is not
//! sorted by id (due jobs are promoted in due-time order), so that position cannot be
//! binary-searched in the ids themselves. It can be found by descending a balanced
//! tree whose nodes know the largest id below them: an implicit treap (ordered by
//! position, not by key), whose nodes also know their subtree's size.
//!
//! The image of a queue keeps the head as the first `head_len` jobs of `ready`, so the
//! snapshot format does not change: taking an image copies the head out (O(head),
//! normally a handful of jobs), and recovery rebuilds the tree from it.

use std::ops::{Index, IndexMut};

use crate::queue::job::Job;

/// No node.
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    id: u64,
    /// Largest id in this node's subtree.
    max: u64,
    /// Nodes in this node's subtree.
    size: u32,
    prio: u32,
    left: u32,
    right: u32,
}

/// Slots per arena chunk.
const CHUNK: usize = 1024;

/// A growable array in fixed-size chunks: growing never moves what is stored, so a
/// storm that grows the head to 100,000 jobs never copies (and page-faults) megabytes
/// in one go, as doubling a `Vec` would.
#[derive(Debug)]
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, value: T) {
        if self.len / CHUNK == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.get_mut(self.len / CHUNK) {
            chunk.push(value);
            self.len += 1;
        }
    }

    /// Empties the array, keeping one chunk's memory.
    fn clear(&mut self) {
        self.chunks.truncate(1);
        if let Some(chunk) = self.chunks.first_mut() {
            chunk.clear();
        }
        self.len = 0;
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// A sequence of jobs (the head, front first).
#[derive(Debug)]
pub struct Head {
    /// Nodes live in one arena and link by index: no allocation per insert once the
    /// arena has grown, and dropping a large tree does not recurse.
    nodes: Chunked<Node>,
    /// Each node's job (`None` once freed).
    jobs: Chunked<Option<Job>>,
    free: Vec<u32>,
    root: u32,
    /// State of the priority generator. Priorities only shape the tree, never the
    /// order, so a fixed seed keeps everything deterministic.
    seed: u64,
    /// Nodes visited, for tests that check the cost is logarithmic.
    #[cfg(test)]
    steps: std::cell::Cell<u64>,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            nodes: Chunked::default(),
            jobs: Chunked::default(),
            free: Vec::new(),
            root: NIL,
            seed: 0x9E37_79B9_7F4A_7C15,
            #[cfg(test)]
            steps: std::cell::Cell::new(0),
        }
    }
}

impl Head {
    /// A head of `jobs`, front first.
    pub fn from_jobs(jobs: impl IntoIterator<Item = Job>) -> Self {
        let mut head = Head::default();
        for job in jobs {
            head.insert(head.len(), job);
        }
        head
    }

    pub fn len(&self) -> usize {
        self.size(self.root) as usize
    }

    /// Position of the first id greater than `id`, or the length if there is none.
    pub fn first_greater(&self, id: u64) -> usize {
        let mut n = self.root;
        if n == NIL || self.nodes[n as usize].max <= id {
            return self.len();
        }
        let mut pos = 0usize;
        // Invariant: the subtree at `n` holds an id greater than `id`.
        loop {
            self.step();
            let node = self.nodes[n as usize];
            if node.left != NIL && self.nodes[node.left as usize].max > id {
                n = node.left;
            } else if node.id > id {
                return pos + self.size(node.left) as usize;
            } else {
                pos += self.size(node.left) as usize + 1;
                n = node.right;
                if n == NIL {
                    // Unreachable while the invariant holds; answer as "none".
                    return self.len();
                }
            }
        }
    }

    /// Inserts `job` at position `at` (clamped to the length).
    pub fn insert(&mut self, at: usize, job: Job) {
        let node = self.alloc(job);
        let (left, right) = self.split(self.root, at.min(self.len()));
        let left = self.merge(left, node);
        self.root = self.merge(left, right);
    }

    /// Takes the first `count` jobs (all of them if there are fewer), front first.
    pub fn pop_front(&mut self, count: usize) -> Vec<Job> {
        let count = count.min(self.len());
        if count == 0 {
            return Vec::new();
        }
        let (gone, rest) = self.split(self.root, count);
        let order = self.in_order(gone);
        let taken = order
            .iter()
            .filter_map(|&n| self.jobs[n as usize].take())
            .collect();
        self.root = rest;
        if rest == NIL {
            self.clear();
        } else {
            self.free.extend(order);
        }
        taken
    }

    /// Empties the head; the arena's memory goes back but for one chunk.
    fn clear(&mut self) {
        self.nodes.clear();
        self.jobs.clear();
        self.free = Vec::new();
        self.root = NIL;
    }

    /// The jobs, front first.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.in_order(self.root)
            .into_iter()
            .filter_map(|n| self.jobs[n as usize].as_ref())
    }

    /// The nodes of the subtree at `n`, in order (iteratively).
    fn in_order(&self, n: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.size(n) as usize);
        let mut stack = Vec::new();
        let mut n = n;
        while n != NIL || !stack.is_empty() {
            while n != NIL {
                stack.push(n);
                n = self.nodes[n as usize].left;
            }
            if let Some(top) = stack.pop() {
                out.push(top);
                n = self.nodes[top as usize].right;
            }
        }
        out
    }

    /// Nodes visited so far.
    #[cfg(test)]
    pub fn steps(&self) -> u64 {
        self.steps.get()
    }

    fn step(&self) {
        #[cfg(test)]
        self.steps.set(self.steps.get() + 1);
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift64*
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        (self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    fn alloc(&mut self, job: Job) -> u32 {
        let id = job.id.0;
        let node = Node {
            id,
            max: id,
            size: 1,
            prio: self.next_prio(),
            left: NIL,
            right: NIL,
        };
        match self.free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                self.jobs[n as usize] = Some(job);
                n
            }
            None => {
                self.nodes.push(node);
                self.jobs.push(Some(job));
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn update(&mut self, n: u32) {
        let node = self.nodes[n as usize];
        let mut max = node.id;
        let mut size = 1;
        for child in [node.left, node.right] {
            if child != NIL {
                let c = self.nodes[child as usize];
                max = max.max(c.max);
                size += c.size;
            }
        }
        let node = &mut self.nodes[n as usize];
        node.max = max;
        node.size = size;
    }

    /// Splits the subtree at `n` into its first `at` ids and the rest. Recursion depth
    /// is the tree's height, O(log n) with random priorities.
    fn split(&mut self, n: u32, at: usize) -> (u32, u32) {
        self.step();
        if n == NIL {
            return (NIL, NIL);
        }
        let node = self.nodes[n as usize];
        let left_size = self.size(node.left) as usize;
        if at <= left_size {
            let (a, b) = self.split(node.left, at);
            self.nodes[n as usize].left = b;
            self.update(n);
            (a, n)
        } else {
            let (a, b) = self.split(node.right, at - left_size - 1);
            self.nodes[n as usize].right = a;
            self.update(n);
            (n, b)
        }
    }

    /// Joins two subtrees, every id of `a` before every id of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        self.step();
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let right = self.nodes[a as usize].right;
            let merged = self.merge(right, b);
            self.nodes[a as usize].right = merged;
            self.update(a);
            a
        } else {
            let left = self.nodes[b as usize].left;
            let merged = self.merge(a, left);
            self.nodes[b as usize].left = merged;
            self.update(b);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::job::JobId;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn job(id: u64) -> Job {
        Job {
            id: JobId(id),
            body: Bytes::new(),
            uniq: None,
            priority: crate::queue::job::DEFAULT_PRIORITY,
        }
    }

    fn ids(head: &Head) -> Vec<u64> {
        head.iter().map(|j| j.id.0).collect()
    }

    /// The definition the tree must agree with: a scan.
    fn first_greater_by_scan(ids: &[u64], id: u64) -> usize {
        ids.iter().position(|&x| x > id).unwrap_or(ids.len())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, u64),
        PutBack(u64),
        Pop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..60, 0u64..200).prop_map(|(at, id)| Op::Insert(at, id)),
            (0u64..200).prop_map(Op::PutBack),
            (0usize..5).prop_map(Op::Pop),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_plain_vector(ops in proptest::collection::vec(op(), 0..300)) {
            let mut head = Head::default();
            let mut model: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(at, id) => {
                        let at = at.min(model.len());
                        model.insert(at, id);
                        head.insert(at, job(id));
                    }
                    Op::PutBack(id) => {
                        let at = first_greater_by_scan(&model, id);
                        prop_assert_eq!(head.first_greater(id), at);
                        model.insert(at, id);
                        head.insert(at, job(id));
                    }
                    Op::Pop(n) => {
                        let n = n.min(model.len());
                        let taken: Vec<u64> = model.drain(..n).collect();
                        let popped: Vec<u64> = head.pop_front(n).iter().map(|j| j.id.0).collect();
                        prop_assert_eq!(popped, taken);
                    }
                }
                prop_assert_eq!(head.len(), model.len());
            }
            prop_assert_eq!(ids(&head), model.clone());
            for probe in 0..200 {
                prop_assert_eq!(head.first_greater(probe), first_greater_by_scan(&model, probe));
            }
            let rebuilt = Head::from_jobs(model.iter().map(|&id| job(id)));
            prop_assert_eq!(ids(&rebuilt), model);
        }
    }

    /// The lease-storm pattern (every returned job younger than the whole head, so it
    /// goes to the end), its mirror (each one older than the whole head), and jobs
    /// landing in the middle (odd ids first, then even ones between them): a scan
    /// costs n/2 steps per job on average, the tree about 3 log2(n).
    #[test]
    fn a_storm_of_returns_costs_logarithmic_steps_per_job() {
        let n: u64 = 100_000;
        for order in [
            (1..=n).collect::<Vec<_>>(),
            (1..=n).rev().collect::<Vec<_>>(),
            (1..=n)
                .step_by(2)
                .chain((2..=n).step_by(2))
                .collect::<Vec<_>>(),
        ] {
            let mut head = Head::default();
            for id in order {
                let at = head.first_greater(id);
                head.insert(at, job(id));
            }
            assert_eq!(ids(&head), (1..=n).collect::<Vec<_>>());
            let per_job = head.steps() / n;
            assert!(per_job < 120, "{per_job} steps per job");
        }
    }

    #[test]
    fn freed_nodes_are_reused_and_a_large_empty_arena_is_released() {
        let mut head = Head::from_jobs((0..1000).map(job));
        assert_eq!(head.pop_front(600).len(), 600);
        for id in 1000..1600 {
            head.insert(head.len(), job(id));
        }
        assert_eq!(head.nodes.len(), 1000);
        assert_eq!(ids(&head), (600..1600).collect::<Vec<_>>());
        let mut big = Head::from_jobs((0..10_000).map(job));
        assert_eq!(big.pop_front(usize::MAX).len(), 10_000);
        assert_eq!((big.nodes.chunks.len(), big.jobs.chunks.len()), (1, 1));
        assert_eq!(big.len(), 0);
    }
}
