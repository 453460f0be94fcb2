//! Registered workers' processed/failed counters, shared by every HTTP worker thread.
//!
//! A worker that names itself on every fetch would otherwise cost one message to the
//! registry actor (on another thread) per request; an atomic add costs nothing. The
//! registry actor still owns who is registered: it creates, resets and drops entries
//! here, and reads them into its snapshots. Counters are therefore persisted by
//! snapshots, not by the log (the README says what a crash can cost them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::names::WorkerId;

#[derive(Debug, Default)]
struct Counts {
    processed: AtomicU64,
    failed: AtomicU64,
}

/// Counters of registered workers.
#[derive(Debug, Default)]
pub struct WorkerCounts {
    workers: RwLock<HashMap<WorkerId, Arc<Counts>>>,
}

impl WorkerCounts {
    /// Adds to a registered worker's counters; unregistered ids are ignored.
    pub fn count(&self, worker: &WorkerId, processed: u64, failed: u64) {
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(counts) = workers.get(worker) {
            counts.processed.fetch_add(processed, Ordering::Relaxed);
            counts.failed.fetch_add(failed, Ordering::Relaxed);
        }
    }

    /// Sets a worker's counters (registration resets them; recovery restores them).
    pub fn set(&self, worker: &WorkerId, processed: u64, failed: u64) {
        let counts = Arc::new(Counts {
            processed: AtomicU64::new(processed),
            failed: AtomicU64::new(failed),
        });
        let mut workers = self.workers.write().unwrap_or_else(|e| e.into_inner());
        workers.insert(worker.clone(), counts);
    }

    /// How many workers are registered.
    pub fn len(&self) -> usize {
        self.workers.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Forgets a worker.
    pub fn remove(&self, worker: &WorkerId) {
        let mut workers = self.workers.write().unwrap_or_else(|e| e.into_inner());
        workers.remove(worker);
    }

    /// A worker's (processed, failed), zeros if unknown.
    pub fn get(&self, worker: &WorkerId) -> (u64, u64) {
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        workers.get(worker).map_or((0, 0), |c| {
            (
                c.processed.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_registered_workers() {
        let counts = WorkerCounts::default();
        let w = WorkerId::parse("w").unwrap_or_else(|_| unreachable!());
        counts.count(&w, 1, 0);
        assert_eq!(counts.get(&w), (0, 0));
        counts.set(&w, 0, 0);
        counts.count(&w, 2, 1);
        assert_eq!(counts.get(&w), (2, 1));
        counts.remove(&w);
        assert_eq!(counts.get(&w), (0, 0));
    }
}
