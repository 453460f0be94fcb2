//! The snapshot actor: every `snapshot_interval_secs` (and at shutdown) it writes one
//! snapshot file holding every queue and the worker registry, then drops the log
//! segments no snapshot still needs.
//!
//! Consistency with the log: the log is rotated first, so every record written before
//! the rotation is covered by the images taken after it; records after the rotation
//! carry sequence numbers that tell replay whether an image already includes them.
//! Images are O(1) clones of persistent collections (the queues never stall for a
//! copy); encoding and writing happen on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::clock::now_ms;
use crate::metrics::SnapshotMetrics;
use crate::queue::directory::QueueDirectory;
use crate::queue::job::JobIds;
use crate::queue::TakeImage;
use crate::registry::actor::{TakeRegistryImage, WorkerRegistry};
use crate::schedule::actor::{ScheduleActor, TakeScheduleImage};
use crate::storage::format::SnapshotData;
use crate::storage::log::Log;
use crate::storage::snapshot::{prune, write_snapshot};
use crate::storage::StorageError;

/// What one snapshot did.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub generation: u64,
    pub path: PathBuf,
    pub log_start: u64,
    pub queues: usize,
    pub jobs: usize,
    pub bytes: usize,
    /// The longest time one queue's actor spent producing its image.
    pub longest_stall: Duration,
    /// Time to encode and write the file (off the actors).
    pub write_time: Duration,
}

/// Takes snapshots, one at a time.
/// What snapshots are taken of.
pub struct SnapshotSources {
    pub queues: Arc<QueueDirectory>,
    pub job_ids: JobIds,
    pub registry: Addr<WorkerRegistry>,
    pub schedules: Addr<ScheduleActor>,
}

pub struct SnapshotActor {
    dir: PathBuf,
    queues: Arc<QueueDirectory>,
    job_ids: JobIds,
    registry: Addr<WorkerRegistry>,
    schedules: Addr<ScheduleActor>,
    log: Log,
    interval: Duration,
    /// The newest generation number used (written or attempted).
    generation: u64,
    /// The newest complete snapshot as (generation, log_start): the fallback the next
    /// snapshot's pruning must keep usable.
    fallback: Option<(u64, u64)>,
    /// The log's record count when the last snapshot began: a periodic snapshot with
    /// nothing new since is skipped (an idle server holding a million jobs would
    /// otherwise rewrite them every interval).
    covered: Option<u64>,
    /// Where each snapshot's time and size go (`/metrics`).
    metrics: Option<SnapshotMetrics>,
}

impl SnapshotActor {
    pub fn new(
        dir: PathBuf,
        sources: SnapshotSources,
        log: Log,
        interval: Duration,
        generation: u64,
        fallback: Option<(u64, u64)>,
    ) -> Self {
        let SnapshotSources {
            queues,
            job_ids,
            registry,
            schedules,
        } = sources;
        SnapshotActor {
            dir,
            queues,
            job_ids,
            registry,
            schedules,
            log,
            interval,
            generation,
            fallback,
            covered: None,
            metrics: None,
        }
    }

    /// Records each snapshot's time and size into `metrics`.
    pub fn with_metrics(mut self, metrics: SnapshotMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl Actor for SnapshotActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |_, ctx| {
            ctx.notify(TakeSnapshot::IfChanged);
        });
    }
}

/// Takes a snapshot now.
#[derive(Message)]
#[rtype(result = "Result<Option<SnapshotReport>, StorageError>")]
pub enum TakeSnapshot {
    /// Only if the log has grown since the last one (answering `None` otherwise): the
    /// periodic snapshot, which an idle server skips.
    IfChanged,
    /// Whatever the log holds: at shutdown, and to seal a recovery that lost data.
    Always,
}

impl Handler<TakeSnapshot> for SnapshotActor {
    // Atomic: the actor handles nothing else until this snapshot is done.
    type Result = AtomicResponse<Self, Result<Option<SnapshotReport>, StorageError>>;

    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        let appended = self.log.appended();
        if matches!(msg, TakeSnapshot::IfChanged) && self.covered == Some(appended) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(None))));
        }
        self.generation += 1;
        let started = Instant::now();
        let snapshot = Snapshot {
            generation: self.generation,
            keep: self.fallback,
            dir: self.dir.clone(),
            queues: self.queues.clone(),
            job_ids: self.job_ids.clone(),
            registry: self.registry.clone(),
            schedules: self.schedules.clone(),
            log: self.log.clone(),
        };
        AtomicResponse::new(Box::pin(snapshot.take().into_actor(self).map(
            move |result, actor, _| {
                if let (Ok(report), Some(metrics)) = (&result, &actor.metrics) {
                    metrics.taken(started.elapsed().as_secs_f64(), report.bytes);
                }
                actor.record_outcome(&result, appended);
                result.map(Some)
            },
        )))
    }
}

impl SnapshotActor {
    /// `appended`: the log's record count when the snapshot began.
    fn record_outcome(&mut self, result: &Result<SnapshotReport, StorageError>, appended: u64) {
        match result {
            Ok(report) => {
                self.covered = Some(appended);
                self.fallback = Some((report.generation, report.log_start));
                tracing::info!(
                    generation = report.generation,
                    path = %report.path.display(),
                    queues = report.queues,
                    jobs = report.jobs,
                    bytes = report.bytes,
                    write_ms = report.write_time.as_millis() as u64,
                    longest_stall_us = report.longest_stall.as_micros() as u64,
                    "snapshot written"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "snapshot failed; the log still holds every change")
            }
        }
    }
}

/// One snapshot under way: what it needs from the actor, so that the work can run as
/// a future the actor waits on.
struct Snapshot {
    generation: u64,
    /// The previous good snapshot as (generation, log_start), if any.
    keep: Option<(u64, u64)>,
    dir: PathBuf,
    queues: Arc<QueueDirectory>,
    job_ids: JobIds,
    registry: Addr<WorkerRegistry>,
    schedules: Addr<ScheduleActor>,
    log: Log,
}

impl Snapshot {
    async fn take(self) -> Result<SnapshotReport, StorageError> {
        let log_start = self.log.rotate().await?;
        let (data, longest_stall) = self.gather_images(log_start).await?;
        let queues = data.queues.len();
        let jobs = data
            .queues
            .iter()
            .map(|q| q.image.ready.len() + q.image.delayed.len())
            .sum();
        let started = Instant::now();
        let (path, bytes) = self.write_off_thread(data).await?;
        Ok(SnapshotReport {
            generation: self.generation,
            path,
            log_start,
            queues,
            jobs,
            bytes,
            longest_stall,
            write_time: started.elapsed(),
        })
    }

    /// The images of every queue and of the registry, taken after the rotation to
    /// `log_start`; with the longest time one actor spent producing its image.
    async fn gather_images(
        &self,
        log_start: u64,
    ) -> Result<(SnapshotData, Duration), StorageError> {
        let incarnation_watermark = self.queues.incarnation_watermark();
        let mut images = Vec::new();
        let mut longest_stall = Duration::ZERO;
        for (name, addr) in self.queues.entries() {
            match addr.send(TakeImage).await {
                Ok(Some((image, stall))) => {
                    longest_stall = longest_stall.max(stall);
                    images.push(image);
                }
                // Deleted meanwhile: it has no image.
                Ok(None) => {}
                // An unreachable queue must not be silently left out: a snapshot
                // without it would make recovery forget it.
                Err(e) => {
                    return Err(StorageError::ImageUnavailable(format!(
                        "queue {name} cannot be imaged ({e})"
                    )))
                }
            }
        }
        let (registry_seq, workers, stall) =
            self.registry.send(TakeRegistryImage).await.map_err(|e| {
                StorageError::ImageUnavailable(format!("worker registry unavailable: {e}"))
            })?;
        longest_stall = longest_stall.max(stall);
        let (schedule_seq, schedules) =
            self.schedules.send(TakeScheduleImage).await.map_err(|e| {
                StorageError::ImageUnavailable(format!("schedules unavailable: {e}"))
            })?;
        let data = SnapshotData {
            generation: self.generation,
            log_start,
            incarnation_watermark,
            next_incarnation: self.queues.next_incarnation(),
            next_job_id: self.job_ids.peek(),
            created_at_ms: now_ms(),
            queues: images,
            registry_seq,
            workers,
            schedule_seq,
            schedules,
        };
        Ok((data, longest_stall))
    }

    /// Encodes and writes the file on the blocking pool, then prunes what no snapshot
    /// needs any more; returns the file's path and size.
    async fn write_off_thread(&self, data: SnapshotData) -> Result<(PathBuf, usize), StorageError> {
        let (dir, log, generation, keep) = (
            self.dir.clone(),
            self.log.clone(),
            self.generation,
            self.keep,
        );
        tokio::task::spawn_blocking(move || {
            // A log that broke meanwhile (its directory or lock gone) means the
            // directory may now be another server's: write and prune nothing.
            log.check()?;
            let written = write_snapshot(&dir, &data)?;
            log.check()?;
            // Keep the previous good snapshot and the log it needs: if this new one is
            // ever unreadable, that pair still recovers everything.
            let (keep_from, keep_log_from) = keep.unwrap_or((generation, 1));
            prune(&dir, keep_from, keep_log_from);
            Ok::<_, StorageError>(written)
        })
        .await
        .map_err(|e| StorageError::SnapshotWriterFailed(e.to_string()))?
    }
}
