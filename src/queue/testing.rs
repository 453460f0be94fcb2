//! Helpers for the queue actor's unit tests: a real actor on a throw-away log.

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::names::QueueName;
use crate::queue::actor::{QueueActor, QueueConfig};
use crate::queue::error::{QueueError, QueueResult};
use crate::queue::job::{Job, JobId};
use crate::queue::messages::{Arrival, Enqueue, Fetch};
use crate::storage::log::{FsyncPolicy, Log};

/// A queue actor logging to a throw-away directory (kept alive by the guard).
pub(super) fn start_queue() -> (Addr<QueueActor>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Log::start(dir.path(), 1, FsyncPolicy::No).expect("log");
    let name = QueueName::parse("q").expect("name");
    (
        QueueActor::new(name, 1, log, QueueConfig::default()).start(),
        dir,
    )
}

pub(super) fn job(id: u64) -> Job {
    Job {
        id: JobId(id),
        body: Bytes::from(id.to_string()),
        uniq: Some(format!("k{id}").into()),
        priority: crate::queue::job::DEFAULT_PRIORITY,
    }
}

pub(super) async fn enqueue(addr: &Addr<QueueActor>, jobs: Vec<Job>, due_ms: Option<u64>) {
    let sent = addr
        .send(Enqueue {
            jobs,
            due_ms,
            expires_ms: None,
            arrival: Arrival::Posted,
        })
        .await;
    assert_eq!(sent.ok(), Some(Ok(())));
}

pub(super) async fn fetch(addr: &Addr<QueueActor>, max: usize) -> QueueResult<Vec<Job>> {
    let (reply, answer) = oneshot::channel();
    let fetch = Fetch {
        max,
        lease: None,
        wait: None,
        reply,
    };
    if addr.send(fetch).await.is_err() {
        return Err(QueueError::Gone);
    }
    answer
        .await
        .unwrap_or(Err(QueueError::Gone))
        .map(|handout| handout.jobs)
}
