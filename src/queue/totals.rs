//! Server-wide sums over every queue, for `/metrics`: jobs by state, what happened to
//! them since the process started, and parked long-polls. Like the memory budget,
//! shared atomics each queue's actor adds its differences to after it applies a
//! change, so a scrape reads them without asking 100k actors, and nobody reads
//! another actor's state.
//!
//! Per queue, the actor keeps a [`QueueTally`] of what its state does not hold
//! (enqueued and expired since start); the rest of a queue's figures are its
//! [`Counters`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use super::state::{Change, Counters};

/// Sums over every queue. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct QueueTotals(Arc<Sums>);

#[derive(Debug, Default)]
struct Sums {
    ready: AtomicI64,
    delayed: AtomicI64,
    leased: AtomicI64,
    dead: AtomicI64,
    enqueued: AtomicU64,
    processed: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    ttl_expired: AtomicU64,
    waiters: AtomicI64,
}

/// What [`QueueTotals::read`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsNow {
    pub ready: u64,
    pub delayed: u64,
    pub leased: u64,
    pub dead: u64,
    pub enqueued: u64,
    pub processed: u64,
    pub failed: u64,
    pub expired: u64,
    pub ttl_expired: u64,
    pub waiters: u64,
}

/// What kind of change a counter difference came from: only these few matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Enqueued,
    LeasesExpired,
    TtlExpired,
    /// A deleted queue: its processed/failed counts go, but nothing was un-done.
    Purged,
    Other,
}

impl ChangeKind {
    pub fn of(change: &Change) -> ChangeKind {
        match change {
            Change::Enqueued { .. } => ChangeKind::Enqueued,
            Change::LeasesExpired { .. } => ChangeKind::LeasesExpired,
            Change::TtlExpired { .. } => ChangeKind::TtlExpired,
            Change::Purged => ChangeKind::Purged,
            _ => ChangeKind::Other,
        }
    }
}

/// One queue's figures its state does not keep: counted since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueTally {
    pub enqueued: u64,
    /// Leases that ran out.
    pub expired: u64,
    /// Jobs whose ttl ran out before they were handed out.
    pub ttl_expired: u64,
}

impl QueueTally {
    /// Counts a change that took the queue's counters from `before` to `after`.
    /// Returns the (enqueued, expired, ttl expired) it added.
    pub fn record(
        &mut self,
        kind: ChangeKind,
        before: &Counters,
        after: &Counters,
    ) -> (u64, u64, u64) {
        let waiting = |c: &Counters| c.ready + c.delayed;
        let added = match kind {
            ChangeKind::Enqueued => (waiting(after).saturating_sub(waiting(before)) as u64, 0, 0),
            ChangeKind::LeasesExpired => (0, before.leased.saturating_sub(after.leased) as u64, 0),
            ChangeKind::TtlExpired => (0, 0, waiting(before).saturating_sub(waiting(after)) as u64),
            ChangeKind::Purged | ChangeKind::Other => (0, 0, 0),
        };
        self.enqueued += added.0;
        self.expired += added.1;
        self.ttl_expired += added.2;
        added
    }
}

fn add(sum: &AtomicI64, before: usize, after: usize) {
    if before != after {
        sum.fetch_add(after as i64 - before as i64, Ordering::Relaxed);
    }
}

fn grow(sum: &AtomicU64, before: u64, after: u64) {
    if after > before {
        sum.fetch_add(after - before, Ordering::Relaxed);
    }
}

impl QueueTotals {
    /// Adds what one change did to a queue: its counters went from `before` to
    /// `after`, and its tally grew by `added` (enqueued, expired, ttl expired).
    pub fn changed(
        &self,
        kind: ChangeKind,
        before: &Counters,
        after: &Counters,
        added: (u64, u64, u64),
    ) {
        let s = &self.0;
        add(&s.ready, before.ready, after.ready);
        add(&s.delayed, before.delayed, after.delayed);
        add(&s.leased, before.leased, after.leased);
        add(&s.dead, before.dead, after.dead);
        // Counters only grow: a purge's reset, and the jobs a departed fetcher left
        // (taken back off the queue's processed count), are not subtracted, or
        // Prometheus would read a counter reset.
        if kind != ChangeKind::Purged {
            grow(&s.processed, before.processed, after.processed);
            grow(&s.failed, before.failed, after.failed);
        }
        if added.0 > 0 {
            s.enqueued.fetch_add(added.0, Ordering::Relaxed);
        }
        if added.1 > 0 {
            s.expired.fetch_add(added.1, Ordering::Relaxed);
        }
        if added.2 > 0 {
            s.ttl_expired.fetch_add(added.2, Ordering::Relaxed);
        }
    }

    /// Counts the jobs of a queue recovery brought back.
    pub fn recovered(&self, counters: &Counters) {
        self.changed(
            ChangeKind::Purged,
            &Counters::default(),
            counters,
            (0, 0, 0),
        );
    }

    /// A fetch parked (`1`) or left its place in line (`-1`).
    pub fn waiters(&self, delta: i64) {
        self.0.waiters.fetch_add(delta, Ordering::Relaxed);
    }

    /// The sums now (each read on its own: a scrape may see one change half-added).
    pub fn read(&self) -> TotalsNow {
        let get = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
        let s = &self.0;
        TotalsNow {
            ready: get(&s.ready),
            delayed: get(&s.delayed),
            leased: get(&s.leased),
            dead: get(&s.dead),
            enqueued: s.enqueued.load(Ordering::Relaxed),
            processed: s.processed.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            expired: s.expired.load(Ordering::Relaxed),
            ttl_expired: s.ttl_expired.load(Ordering::Relaxed),
            waiters: get(&s.waiters),
        }
    }
}

/// Counts one parked fetch in [`QueueTotals`] for as long as it lives, however it
/// leaves (served, timed out, its client gone, the server stopping).
#[derive(Debug)]
pub struct ParkedCount(QueueTotals);

impl ParkedCount {
    pub fn new(totals: &QueueTotals) -> Self {
        totals.waiters(1);
        ParkedCount(totals.clone())
    }
}

impl Drop for ParkedCount {
    fn drop(&mut self) {
        self.0.waiters(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(ready: usize, leased: usize, processed: u64) -> Counters {
        Counters {
            ready,
            leased,
            processed,
            open: true,
            ..Counters::default()
        }
    }

    #[test]
    fn sums_follow_changes_and_a_purge_keeps_what_was_processed() {
        let totals = QueueTotals::default();
        let mut tally = QueueTally::default();
        let (empty, three) = (counters(0, 0, 0), counters(3, 0, 0));
        let added = tally.record(ChangeKind::Enqueued, &empty, &three);
        totals.changed(ChangeKind::Enqueued, &empty, &three, added);
        let leased = counters(1, 2, 2);
        totals.changed(ChangeKind::Other, &three, &leased, (0, 0, 0));
        let expired = counters(2, 1, 2);
        let added = tally.record(ChangeKind::LeasesExpired, &leased, &expired);
        totals.changed(ChangeKind::LeasesExpired, &leased, &expired, added);
        assert_eq!(
            tally,
            QueueTally {
                enqueued: 3,
                expired: 1,
                ttl_expired: 0
            }
        );
        let now = totals.read();
        assert_eq!((now.ready, now.leased, now.enqueued), (2, 1, 3));
        assert_eq!((now.processed, now.expired), (2, 1));
        // Jobs a departed fetcher left go back, their processed count with them: the
        // sum does not step back.
        let returned = counters(3, 1, 1);
        totals.changed(ChangeKind::Other, &expired, &returned, (0, 0, 0));
        assert_eq!((totals.read().ready, totals.read().processed), (3, 2));
        totals.changed(
            ChangeKind::Purged,
            &returned,
            &Counters::default(),
            (0, 0, 0),
        );
        let now = totals.read();
        assert_eq!((now.ready, now.leased, now.processed), (0, 0, 2));
    }

    #[test]
    fn a_parked_count_lasts_as_long_as_its_waiter() {
        let totals = QueueTotals::default();
        let one = ParkedCount::new(&totals);
        let two = ParkedCount::new(&totals);
        assert_eq!(totals.read().waiters, 2);
        drop(one);
        assert_eq!(totals.read().waiters, 1);
        drop(two);
        assert_eq!(totals.read().waiters, 0);
    }
}
