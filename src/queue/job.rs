//! A job: the exact bytes a client posted, plus the metadata the queue keeps for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A job's identity, unique within the server and stable across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

/// A job's priority when its creator gives none: the middle of the range, so work
/// can be posted both more and less urgent than what old clients post.
pub const DEFAULT_PRIORITY: u8 = 128;

/// One job. The body is kept as the posted bytes (already validated as JSON) so a
/// fetch returns exactly what was posted; cloning is cheap (reference-counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub body: Bytes,
    /// The `uniq` key given at creation; held by the queue while the job waits.
    pub uniq: Option<Arc<str>>,
    /// Lower is more urgent (beanstalkd's orientation): a fetch takes the most urgent
    /// ready job, FIFO among equals. [`DEFAULT_PRIORITY`] unless the creator said.
    pub priority: u8,
}

/// Mints job ids. One is shared by every queue (handlers mint the id before the job
/// reaches its queue), so ids are unique across the server; snapshots record where
/// it stands so ids are never reused after a restart.
#[derive(Debug, Clone)]
pub struct JobIds(Arc<AtomicU64>);

impl JobIds {
    /// A minter whose first id is `next`.
    pub fn starting_at(next: u64) -> Self {
        JobIds(Arc::new(AtomicU64::new(next)))
    }

    /// A fresh id, never handed out before.
    pub fn mint(&self) -> JobId {
        JobId(self.0.fetch_add(1, Ordering::Relaxed))
    }

    /// `count` fresh ids in one step, so they run consecutively (a batch's ids are
    /// then `first..first + count` whatever other requests mint meanwhile).
    pub fn mint_block(&self, count: u64) -> impl Iterator<Item = JobId> {
        let first = self.0.fetch_add(count, Ordering::Relaxed);
        (first..first.saturating_add(count)).map(JobId)
    }

    /// The id the next call to [`JobIds::mint`] will hand out.
    pub fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

// On disk a job is the tuple (id, body as a CBOR byte string, uniq key or null), and
// a fourth element, its priority, only when that is not the default: the body stays
// the posted bytes, never an array of integers, and a job of the default priority is
// written byte for byte as before priorities existed (so files from then read as jobs
// of the default priority, and logs of queues that use none do not grow).
impl Serialize for Job {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let prioritized = self.priority != DEFAULT_PRIORITY;
        let mut tuple = serializer.serialize_tuple(if prioritized { 4 } else { 3 })?;
        tuple.serialize_element(&self.id.0)?;
        tuple.serialize_element(serde_bytes::Bytes::new(&self.body))?;
        tuple.serialize_element(&self.uniq.as_deref())?;
        if prioritized {
            tuple.serialize_element(&self.priority)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JobVisitor;

        impl<'de> Visitor<'de> for JobVisitor {
            type Value = Job;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a job as (id, body bytes, uniq[, priority])")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Job, A::Error> {
                let id: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let body: serde_bytes::ByteBuf = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let uniq: Option<String> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let priority: Option<u8> = seq.next_element()?;
                Ok(Job {
                    id: JobId(id),
                    body: Bytes::from(body.into_vec()),
                    uniq: uniq.map(Arc::from),
                    priority: priority.unwrap_or(DEFAULT_PRIORITY),
                })
            }
        }

        deserializer.deserialize_tuple(3, JobVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        assert!(ciborium::into_writer(value, &mut bytes).is_ok());
        bytes
    }

    fn job(priority: u8) -> Job {
        Job {
            id: JobId(7),
            body: Bytes::from_static(b"{\"a\":1}"),
            uniq: Some("k".into()),
            priority,
        }
    }

    /// The shape written before priorities existed.
    #[derive(Serialize)]
    struct OldJob<'a>(u64, &'a serde_bytes::Bytes, Option<&'a str>);

    #[test]
    fn a_default_priority_job_is_written_as_before_and_old_jobs_read_as_default() {
        let old = cbor(&OldJob(7, serde_bytes::Bytes::new(b"{\"a\":1}"), Some("k")));
        assert_eq!(cbor(&job(DEFAULT_PRIORITY)), old);
        let read: Option<Job> = ciborium::from_reader(&old[..]).ok();
        assert_eq!(read, Some(job(DEFAULT_PRIORITY)));
    }

    #[test]
    fn any_other_priority_round_trips() {
        for priority in [0, 1, 127, 129, 255] {
            let bytes = cbor(&job(priority));
            let read: Option<Job> = ciborium::from_reader(&bytes[..]).ok();
            assert_eq!(read, Some(job(priority)));
        }
    }
}
