//! A queue: its state and the only code that changes it ([`state`]), its ready jobs
//! by priority ([`ready`]), the actor that owns that state ([`actor`]) with its
//! messages ([`messages`]), its hand-outs to fetchers ([`delivery`]) and its parked
//! fetches ([`waiters`]), and the directory that finds a queue's actor by name
//! ([`directory`]).
//!
//! Code outside the queue talks to it through the names re-exported here.

mod actor;
pub(crate) mod backoff;
pub(crate) mod budget;
mod delivery;
pub(crate) mod directory;
mod error;
mod head;
pub(crate) mod job;
pub(crate) mod leasing;
mod messages;
mod ready;
pub(crate) mod state;
#[cfg(test)]
mod testing;
pub(crate) mod totals;
mod waiters;

pub(crate) use actor::QueueConfig;
pub(crate) use error::QueueError;
pub(crate) use messages::{
    Ack, Arrival, DeadAction, Enqueue, Extend, FailLease, Fetching, FindJob, GetCounters,
    GetFigures, GetSettings, Handout, LeaseRequest, ListDead, ListLeases, ListReady, Purge,
    QueueFigures, QueueSettings, ResolveDead, SetBackoff, SetMaxAttempts, SetMaxJobs, SetOnExpiry,
    SetOpen, TakeImage,
};
pub(crate) use messages::{GetSummary, JobsPage, ListJobs, Summary, Waiting};
