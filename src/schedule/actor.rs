//! The schedule actor: owns the [`ScheduleState`], logs every change before applying
//! it, and fires runs from one timer set for the earliest next run (re-armed after
//! each change and each run, never a scan per tick).
//!
//! A run logs its `Fired` record, then sends the job to its queue exactly as
//! `POST /q/NAME` does, and handles nothing else until the queue has answered: a
//! snapshot's image is therefore never taken with a run half done (see
//! [`ScheduleState::image`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use crate::clock::now_ms;
use crate::metrics::ScheduleMetrics;
use crate::names::QueueName;
use crate::queue::directory::QueueDirectory;
use crate::queue::job::{Job, JobId, JobIds, DEFAULT_PRIORITY};
use crate::queue::{Arrival, Enqueue, QueueError};
use crate::schedule::state::{
    Schedule, ScheduleChange, ScheduleImage, ScheduleSpec, ScheduleState,
};
use crate::storage::format::LogRecordRef;
use crate::storage::log::Log;
use crate::storage::StorageError;

/// The longest the timer sleeps: a wall clock set forward or back is noticed within
/// this long.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How soon a run that could not be logged is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Catch-up runs each logged on their own line (a restart after downtime: one each).
const CATCH_UP_LINES: u64 = 1000;

/// Beyond those, at most one line this often, counting the runs since the last.
const CATCH_UP_EVERY: Duration = Duration::from_secs(10);

/// What became of a run's job.
enum Outcome {
    /// In its queue.
    Enqueued,
    /// Refused by its queue (full, memory budget, a change it could not log).
    Refused(String),
    /// The queue's actor is gone (the server is stopping): the job stays pending and
    /// is sent again at the next start.
    Unknown(String),
}

/// Sends job `job_id` of a run to its queue, exactly as `POST /q/NAME` would
/// (creating the queue if needed).
async fn deliver(queues: Arc<QueueDirectory>, spec: ScheduleSpec, job_id: u64) -> Outcome {
    let queue = match QueueName::parse(&spec.queue) {
        Ok(queue) => queue,
        Err(e) => return Outcome::Refused(format!("invalid queue name: {e}")),
    };
    let job = Job {
        id: JobId(job_id),
        body: Bytes::from(spec.job.into_bytes()),
        uniq: None,
        priority: spec.priority.unwrap_or(DEFAULT_PRIORITY),
    };
    // As `POST /q/QUEUE?ttl=S` would: the ttl counts from the run.
    let expires_ms = spec
        .ttl_secs
        .map(|secs| crate::clock::now_ms().saturating_add(secs.saturating_mul(1000)));
    let answer = queues
        .ask(&queue, true, || Enqueue {
            jobs: vec![job.clone()],
            due_ms: None,
            expires_ms,
            arrival: Arrival::Posted,
        })
        .await;
    match answer {
        Ok(_) => Outcome::Enqueued,
        Err(e @ (QueueError::Gone | QueueError::Stopping)) => Outcome::Unknown(e.to_string()),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// The schedules, and the timer that fires them.
pub struct ScheduleActor {
    state: ScheduleState,
    seq: u64,
    log: Log,
    queues: Arc<QueueDirectory>,
    job_ids: JobIds,
    timer: Option<SpawnHandle>,
    metrics: Option<ScheduleMetrics>,
    /// Catch-up runs so far, and how many of them the log had been told of when it
    /// was last told (at `catch_up_told`).
    catch_ups: u64,
    catch_ups_told: u64,
    catch_up_told: Instant,
}

impl ScheduleActor {
    /// Counts schedules and runs into `metrics` (`/metrics`).
    pub fn with_metrics(mut self, metrics: ScheduleMetrics) -> Self {
        metrics.defined(self.state.len());
        self.metrics = Some(metrics);
        self
    }

    /// The schedules as recovered, whose last logged change was `seq`.
    pub fn new(
        state: ScheduleState,
        seq: u64,
        log: Log,
        queues: Arc<QueueDirectory>,
        job_ids: JobIds,
    ) -> Self {
        ScheduleActor {
            state,
            seq,
            log,
            queues,
            job_ids,
            timer: None,
            metrics: None,
            catch_ups: 0,
            catch_ups_told: 0,
            catch_up_told: Instant::now(),
        }
    }

    /// The one place schedules change: logged, then applied.
    fn commit(
        &mut self,
        change: ScheduleChange,
    ) -> Result<crate::storage::log::Durable, StorageError> {
        let seq = self.seq + 1;
        let durable = self.log.append(&LogRecordRef::Schedule {
            seq,
            change: &change,
        })?;
        self.seq = seq;
        self.state.apply(&change);
        if let Some(metrics) = &self.metrics {
            match change {
                ScheduleChange::Fired { .. } => metrics.ran(),
                ScheduleChange::Set { .. } | ScheduleChange::Removed { .. } => {
                    metrics.defined(self.state.len())
                }
                ScheduleChange::Failed { .. } => {}
            }
        }
        Ok(durable)
    }

    /// Sets the timer for the earliest next run.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let Some((at, _)) = self.state.earliest() else {
            return;
        };
        let wait = Duration::from_millis(at.saturating_sub(now_ms())).min(MAX_SLEEP);
        if wait.is_zero() {
            // Due now: through the mailbox, behind the messages already waiting (a
            // timer of zero would wait for the clock's next millisecond).
            ctx.notify(Tick);
            return;
        }
        self.timer = Some(ctx.run_later(wait, |actor, ctx| {
            actor.timer = None;
            actor.tick(ctx);
        }));
    }

    /// Fires the earliest schedule if it is due, then looks again; otherwise sleeps
    /// until it is.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let Some((at, name)) = self.state.earliest().map(|(at, n)| (at, n.to_owned())) else {
            return;
        };
        if at > now {
            return self.arm(ctx);
        }
        let Some(due) = self.state.due(&name, now) else {
            return self.arm(ctx);
        };
        let Some(spec) = self.state.get(&name).map(|s| s.spec.clone()) else {
            return self.arm(ctx);
        };
        let job_id = self.job_ids.mint().0;
        let fired = self.commit(ScheduleChange::Fired {
            name: name.clone(),
            slot_ms: due.slot_ms,
            job_id,
            missed: due.missed,
        });
        if let Err(e) = fired {
            tracing::error!(schedule = %name, error = %e, "cannot log a schedule's run; trying again in a second");
            self.timer = Some(ctx.run_later(RETRY_AFTER, |actor, ctx| {
                actor.timer = None;
                actor.tick(ctx);
            }));
            return;
        }
        if let Some(missed) = due.missed {
            self.tell_catch_up(&name, missed.count);
        }
        self.send_job(name, spec, job_id, ctx);
    }

    /// Sends a run's job to its queue, waiting (handling nothing else) for the
    /// answer; then looks for the next run through the timer, never directly: a
    /// backlog of due runs (more schedules than the log can take at once) then still
    /// lets the messages waiting in between through (reads, changes, snapshots, the
    /// stop) rather than starving them until it clears.
    fn send_job(&mut self, name: String, spec: ScheduleSpec, job_id: u64, ctx: &mut Context<Self>) {
        let sent = deliver(self.queues.clone(), spec, job_id);
        ctx.wait(sent.into_actor(self).map(move |outcome, actor, ctx| {
            actor.settle(&name, job_id, outcome);
            actor.arm(ctx);
        }));
    }

    /// Says a schedule ran once for runs it missed: every time for the first
    /// [`CATCH_UP_LINES`], then once per [`CATCH_UP_EVERY`] with how many there were,
    /// so a server that cannot keep up with its schedules does not flood its log.
    fn tell_catch_up(&mut self, name: &str, missed: u64) {
        self.catch_ups += 1;
        let now = Instant::now();
        if self.catch_ups <= CATCH_UP_LINES {
            tracing::info!(schedule = %name, missed, "a schedule ran once for the runs it missed");
            self.catch_up_told = now;
        } else if now.duration_since(self.catch_up_told) >= CATCH_UP_EVERY {
            let since = self.catch_ups - self.catch_ups_told;
            tracing::info!(schedule = %name, missed, runs = since, "schedules ran once for runs they missed (the server falls behind its schedules)");
            self.catch_up_told = now;
            self.catch_ups_told = self.catch_ups;
        }
    }

    fn settle(&mut self, name: &str, job_id: u64, outcome: Outcome) {
        match outcome {
            Outcome::Enqueued => self.state.job_settled(job_id),
            Outcome::Refused(error) => {
                tracing::warn!(schedule = %name, job = job_id, %error, "a schedule's queue refused its job");
                let logged = self.commit(ScheduleChange::Failed {
                    name: name.to_owned(),
                    job_id,
                    error,
                });
                if let Err(e) = logged {
                    tracing::error!(schedule = %name, error = %e, "cannot log a refused run; its job is sent again at the next start");
                }
            }
            Outcome::Unknown(error) => {
                tracing::warn!(schedule = %name, job = job_id, %error, "a schedule's job may not have reached its queue; it is sent again at the next start unless it did");
            }
        }
    }
}

/// Looks for a due run now, after the messages already in the mailbox.
#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

impl Handler<Tick> for ScheduleActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Actor for ScheduleActor {
    type Context = Context<Self>;

    /// Sends again the jobs of runs logged before a crash whose queue never got
    /// them (same ids), then starts the timer; runs missed while the server was
    /// down are due at once.
    fn started(&mut self, ctx: &mut Self::Context) {
        for (job_id, name) in self.state.pending() {
            let Some(spec) = self.state.get(&name).map(|s| s.spec.clone()) else {
                continue;
            };
            tracing::info!(schedule = %name, job = job_id, "sending a run's job its queue never got before the stop");
            let sent = deliver(self.queues.clone(), spec, job_id);
            ctx.wait(sent.into_actor(self).map(move |outcome, actor, _| {
                actor.settle(&name, job_id, outcome);
            }));
        }
        ctx.wait(actix::fut::ready(()).map(|(), actor: &mut Self, ctx| actor.tick(ctx)));
    }
}

/// One schedule as the routes show it.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub name: String,
    pub schedule: Schedule,
}

/// Creates or replaces a schedule (checked by the caller).
#[derive(Message)]
#[rtype(result = "Result<(ScheduleView, bool), StorageError>")]
pub struct SetSchedule {
    pub name: String,
    pub spec: ScheduleSpec,
}

impl Handler<SetSchedule> for ScheduleActor {
    type Result = ResponseFuture<Result<(ScheduleView, bool), StorageError>>;

    /// Answers the schedule as it now is, and whether it replaced one.
    fn handle(&mut self, msg: SetSchedule, ctx: &mut Context<Self>) -> Self::Result {
        let replaced = self.state.get(&msg.name).is_some();
        let committed = self.commit(ScheduleChange::Set {
            name: msg.name.clone(),
            spec: msg.spec,
            now_ms: now_ms(),
        });
        self.arm(ctx);
        let view = self
            .state
            .get(&msg.name)
            .cloned()
            .map(|schedule| ScheduleView {
                name: msg.name,
                schedule,
            });
        Box::pin(async move {
            committed?.wait().await?;
            view.map(|view| (view, replaced))
                .ok_or_else(|| StorageError::EncodeRecord("the schedule did not take".into()))
        })
    }
}

/// Removes a schedule; answers whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, StorageError>")]
pub struct RemoveSchedule(pub String);

impl Handler<RemoveSchedule> for ScheduleActor {
    type Result = ResponseFuture<Result<bool, StorageError>>;

    fn handle(&mut self, msg: RemoveSchedule, ctx: &mut Context<Self>) -> Self::Result {
        if self.state.get(&msg.0).is_none() {
            return Box::pin(std::future::ready(Ok(false)));
        }
        let committed = self.commit(ScheduleChange::Removed { name: msg.0 });
        self.arm(ctx);
        Box::pin(async move {
            committed?.wait().await?;
            Ok(true)
        })
    }
}

/// One schedule, if it exists.
#[derive(Message)]
#[rtype(result = "Option<ScheduleView>")]
pub struct GetSchedule(pub String);

impl Handler<GetSchedule> for ScheduleActor {
    type Result = Option<ScheduleView>;

    fn handle(&mut self, msg: GetSchedule, _: &mut Context<Self>) -> Self::Result {
        let schedule = self.state.get(&msg.0).cloned()?;
        Some(ScheduleView {
            name: msg.0,
            schedule,
        })
    }
}

/// A page of schedules in name order: up to `limit` named after `after`; answers
/// them, the `after` of the next page when more follow, and how many there are.
#[derive(Message)]
#[rtype(result = "(Vec<ScheduleView>, Option<String>, usize)")]
pub struct ListSchedules {
    pub after: Option<String>,
    pub limit: usize,
}

impl Handler<ListSchedules> for ScheduleActor {
    type Result = MessageResult<ListSchedules>;

    fn handle(&mut self, msg: ListSchedules, _: &mut Context<Self>) -> Self::Result {
        let mut page: Vec<ScheduleView> = self
            .state
            .page(msg.after.as_deref(), msg.limit + 1)
            .into_iter()
            .map(|(name, schedule)| ScheduleView {
                name: name.clone(),
                schedule: schedule.clone(),
            })
            .collect();
        let more = page.len() > msg.limit;
        page.truncate(msg.limit);
        let next = if more {
            page.last().map(|v| v.name.clone())
        } else {
            None
        };
        MessageResult((page, next, self.state.len()))
    }
}

/// The schedules' image for a snapshot: (last change number, schedules).
#[derive(Message)]
#[rtype(result = "(u64, Vec<ScheduleImage>)")]
pub struct TakeScheduleImage;

impl Handler<TakeScheduleImage> for ScheduleActor {
    type Result = MessageResult<TakeScheduleImage>;

    fn handle(&mut self, _: TakeScheduleImage, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.seq, self.state.image()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::directory::FetchRequest;
    use crate::queue::QueueConfig;
    use crate::schedule::state::ScheduleSpec;
    use crate::storage::log::FsyncPolicy;

    /// A run logged before a crash whose job its queue never got (pending after
    /// replay) is sent at start, once, under its own id; the schedule then has
    /// nothing pending.
    #[actix::test]
    async fn a_pending_run_is_sent_at_start_once_under_its_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = Log::start(dir.path(), 1, FsyncPolicy::No).unwrap_or_else(|e| panic!("{e}"));
        let queues = Arc::new(QueueDirectory::new(1, log.clone(), QueueConfig::default()));
        let mut state = ScheduleState::default();
        let now = now_ms();
        state.apply(&ScheduleChange::Set {
            name: "s".into(),
            spec: ScheduleSpec {
                cron: "0 0 0 1 1 *".into(),
                timezone: "UTC".into(),
                queue: "q".into(),
                job: "{\"n\": 1}".into(),
                priority: None,
                ttl_secs: None,
            },
            now_ms: now - 5000,
        });
        state.apply(&ScheduleChange::Fired {
            name: "s".into(),
            slot_ms: now - 1000,
            job_id: 42,
            missed: None,
        });
        assert_eq!(state.pending(), vec![(42, "s".to_owned())]);
        let actor =
            ScheduleActor::new(state, 2, log, queues.clone(), JobIds::starting_at(43)).start();
        let view = actor.send(GetSchedule("s".into())).await.ok().flatten();
        assert_eq!(
            view.map(|v| (v.schedule.pending, v.schedule.runs)),
            Some((None, 1))
        );
        let name = QueueName::parse("q").unwrap_or_else(|e| panic!("{e}"));
        let fetch = || FetchRequest {
            max: 10,
            lease: None,
            wait: None,
        };
        let jobs = queues.fetch(&name, fetch()).await.map(|h| {
            h.iter()
                .map(|j| (j.id.0, String::from_utf8_lossy(&j.body).into_owned()))
                .collect::<Vec<_>>()
        });
        assert_eq!(jobs, Ok(vec![(42, "{\"n\": 1}".to_owned())]));
        assert_eq!(
            queues.fetch(&name, fetch()).await.map(|h| h.len()),
            Err(QueueError::Empty)
        );
    }
}
