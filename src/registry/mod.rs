//! The worker registry: which workers are registered on which queues ([`state`],
//! owned by the [`actor`]), when each was last seen, and their processed/failed
//! counters ([`counts`]). Handlers reach all of it through one [`Registry`] handle.

pub(crate) mod actor;
pub(crate) mod counts;
pub(crate) mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;

use crate::names::WorkerId;
use actor::{Seen, WorkerRegistry};
use counts::WorkerCounts;

/// How often one HTTP worker thread tells the registry it saw a given worker:
/// last-seen times are kept to about this precision, and a worker that sends its id
/// on every request costs one cross-thread message a second, not one per request.
const SEEN_EVERY: Duration = Duration::from_secs(1);

/// Ids one thread remembers reporting; ids are client-chosen, so this is bounded.
const REPORTED_MAX: usize = 10_000;

thread_local! {
    /// When this thread last reported each worker id.
    static REPORTED: RefCell<HashMap<Box<str>, Instant>> = RefCell::new(HashMap::new());
}

/// The registry as request handlers see it: the actor for registrations and views,
/// the counters for the per-request bookkeeping that must not cost a message.
#[derive(Clone)]
pub struct Registry {
    pub actor: Addr<WorkerRegistry>,
    counts: Arc<WorkerCounts>,
}

impl Registry {
    pub fn new(actor: Addr<WorkerRegistry>, counts: Arc<WorkerCounts>) -> Self {
        Registry { actor, counts }
    }

    /// Credits a worker named in a request with processed or failed jobs (registered
    /// workers only).
    pub fn count_work(&self, worker: Option<&WorkerId>, processed: u64, failed: u64) {
        if let Some(worker) = worker.filter(|_| processed + failed > 0) {
            self.counts.count(worker, processed, failed);
        }
    }

    /// A worker's (processed, failed) counters, zeros if it is not registered.
    pub fn counters(&self, worker: &WorkerId) -> (u64, u64) {
        self.counts.get(worker)
    }

    /// How many workers are registered.
    pub fn registered(&self) -> usize {
        self.counts.len()
    }

    /// A work request (see [`is_sighting`]) carried `raw` as its worker id: tells the registry, at most once a
    /// second per id and thread. Ids that are not valid worker ids are ignored here;
    /// the route that reads the header reports them.
    pub fn saw(&self, raw: &str) {
        if !due_report(raw) {
            return;
        }
        if let Ok(id) = WorkerId::parse(raw) {
            self.actor.do_send(Seen(id));
        }
    }
}

/// Whether a request carrying a worker id counts as a sighting of that worker: only
/// the requests that do a worker's work (fetching, posting, acking, failing, extending
/// on `/q` and `/qb`; registering and unregistering), not reads, which anyone may send
/// with any id and which would otherwise fill the registry with ids nobody works as.
pub fn is_sighting(method: &actix_web::http::Method, path: &str) -> bool {
    path.starts_with("/q/")
        || path.starts_with("/qb/")
        || (path.starts_with("/w/") && method != actix_web::http::Method::GET)
}

/// Whether this thread should report worker `id` as seen now.
fn due_report(id: &str) -> bool {
    REPORTED.with(|reported| {
        let mut reported = reported.borrow_mut();
        let now = Instant::now();
        match reported.get_mut(id) {
            Some(last) if now.duration_since(*last) < SEEN_EVERY => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                if reported.len() >= REPORTED_MAX {
                    reported.clear();
                }
                reported.insert(id.into(), now);
                true
            }
        }
    })
}
