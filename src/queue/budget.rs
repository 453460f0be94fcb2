//! The server-wide memory budget for jobs: one counter shared by every queue, of what
//! the jobs they hold cost (body bytes, `uniq` key, and [`JOB_OVERHEAD_BYTES`] each).
//!
//! Each queue's state keeps its own total ([`QueueState::bytes`]); its actor adds the
//! difference every change makes to this shared counter (one atomic add), and counts
//! a recovered queue's total when it starts. Producers are refused (507) when a create
//! would take the total past the limit; everything else goes on, and as jobs leave
//! room comes back by itself.
//!
//! The check and the add are not one step: queues on different threads admitting
//! jobs at the same instant may each pass the check, so the total can overshoot the
//! limit by at most one request per HTTP worker thread.
//!
//! [`QueueState::bytes`]: super::state::QueueState::bytes

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::job::Job;

/// What a job costs beyond its body and `uniq` key: the `Job` itself in the queue's
/// collections, its body's allocation and reference count, and the log's and
/// snapshot's share of keeping it. Measured with an RSS experiment (BENCHMARKS.md,
/// "Memory budget"): 1,000,000 jobs of 100 bytes took 289 bytes each in RSS.
pub const JOB_OVERHEAD_BYTES: u64 = 192;

/// What one job counts against the budget.
pub fn job_cost(job: &Job) -> u64 {
    job.body.len() as u64 + job.uniq.as_ref().map_or(0, |k| k.len() as u64) + JOB_OVERHEAD_BYTES
}

/// The shared counter and its limit. Clones share the counter.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    used: Arc<AtomicU64>,
    /// `u64::MAX`: unlimited.
    limit: u64,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::unlimited()
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// A budget that never refuses.
    pub fn unlimited() -> Self {
        MemoryBudget::new(u64::MAX)
    }

    /// Whether `cost` more bytes fit.
    pub fn admits(&self, cost: u64) -> bool {
        self.limit == u64::MAX || self.used().saturating_add(cost) <= self.limit
    }

    /// Bytes the jobs of every queue cost now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit in bytes (`u64::MAX`: none).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Records a queue's total going from `before` to `after`.
    pub fn moved(&self, before: u64, after: u64) {
        if after > before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

/// Where the `"auto"` budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineMemory {
    /// `MemTotal` of /proc/meminfo, in bytes.
    pub total: Option<u64>,
    /// The cgroup's memory limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`), if
    /// one is set.
    pub cgroup: Option<u64>,
}

impl MachineMemory {
    /// Reads what this machine (and cgroup) offers; what cannot be read is `None`.
    pub fn read() -> Self {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| parse_meminfo_total(&text));
        let cgroup = [
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| parse_cgroup_limit(&text));
        MachineMemory { total, cgroup }
    }

    /// Half the lower of the two (`None` if neither is known).
    pub fn auto_budget(&self) -> Option<u64> {
        let lowest = match (self.total, self.cgroup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        lowest.map(|bytes| bytes / 2)
    }
}

/// `MemTotal:       24576000 kB` → bytes.
fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup limit: a number of bytes, or `max` (none). cgroup v1 spells "none" as a
/// huge number, treated as none too.
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_up_to_its_limit_and_frees_room() {
        let budget = MemoryBudget::new(1000);
        let other = budget.clone();
        assert!(budget.admits(1000));
        other.moved(0, 900);
        assert_eq!(budget.used(), 900);
        assert!(budget.admits(100));
        assert!(!budget.admits(101));
        other.moved(900, 100);
        assert!(budget.admits(900));
        assert!(MemoryBudget::unlimited().admits(u64::MAX));
    }

    #[test]
    fn the_auto_budget_is_half_the_lower_of_machine_and_cgroup() {
        let meminfo = "MemFree: 1 kB\nMemTotal:       1000 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(1_024_000));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("4096\n"), Some(4096));
        let m = MachineMemory {
            total: Some(1000),
            cgroup: Some(600),
        };
        assert_eq!(m.auto_budget(), Some(300));
        let m = MachineMemory {
            total: Some(1000),
            cgroup: None,
        };
        assert_eq!(m.auto_budget(), Some(500));
    }
}
