//! Which queues have jobs out on lease. The worker view (`/workers`) shows each
//! worker's leases, which live with their queues: it asks the queues listed here, not
//! every queue (there may be 100,000 of them, nearly all with no lease out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::names::QueueName;

/// The queues (by incarnation, so a deleted queue's last word never unlists its
/// successor) that hold at least one lease.
#[derive(Debug, Clone, Default)]
pub struct LeasingQueues(Arc<Mutex<HashMap<u64, QueueName>>>);

impl LeasingQueues {
    /// Lists or unlists a queue incarnation; its actor calls this when its number of
    /// leases goes from zero to more or back.
    pub fn set(&self, incarnation: u64, name: &QueueName, leasing: bool) {
        let mut queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if leasing {
            queues.insert(incarnation, name.clone());
        } else {
            queues.remove(&incarnation);
        }
    }

    /// The names of the queues holding leases, sorted, each once.
    pub fn names(&self) -> Vec<QueueName> {
        let queues = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<QueueName> = queues.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_by_incarnation() {
        let leasing = LeasingQueues::default();
        let q = QueueName::parse("q").unwrap_or_else(|_| unreachable!());
        leasing.set(1, &q, true);
        leasing.set(2, &q, true);
        assert_eq!(leasing.names(), vec![q.clone()]);
        // The deleted incarnation's last word leaves its successor listed.
        leasing.set(1, &q, false);
        assert_eq!(leasing.names(), vec![q.clone()]);
        leasing.set(2, &q, false);
        assert!(leasing.names().is_empty());
    }
}
