//! Handing jobs to a fetcher, whether it asked just now or was parked.
//!
//! Jobs are taken (or leased) by a logged change first, and reach the fetcher only once
//! that change is as durable as the fsync policy requires. A fetcher that has gone by
//! then, or a change that never became durable, puts the jobs back where they were, so
//! a job is never lost with a discarded reply.

use actix::prelude::*;

use crate::clock::now_ms;
use crate::queue::actor::QueueActor;
use crate::queue::job::Job;
use crate::queue::messages::{LeaseRequest, Reply};
use crate::queue::state::Change;
use crate::storage::log::Durable;

/// How jobs left the queue, which decides how they come back if undelivered.
#[derive(Debug, Clone, Copy)]
enum HandOut {
    /// Fetched for good ([`Change::Taken`]).
    Taken,
    /// On lease ([`Change::Leased`]).
    Leased,
}

impl QueueActor {
    /// Takes (or leases) up to `max` jobs for a fetcher and delivers them once the
    /// change is durable as the fsync policy requires.
    pub(super) fn hand_out(
        &mut self,
        max: usize,
        lease: Option<LeaseRequest>,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let (how, change) = match lease {
            None => (HandOut::Taken, Change::Taken { count: max }),
            Some(lease) => (
                HandOut::Leased,
                Change::Leased {
                    count: max,
                    deadline_ms: now_ms().saturating_add(lease.duration_ms),
                    worker: lease.worker,
                },
            ),
        };
        match self.commit(change, ctx) {
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
            Ok((jobs, Durable::Now)) => self.deliver(jobs, how, reply, ctx),
            Ok((jobs, durable)) => {
                ctx.spawn(durable.wait().into_actor(self).map(
                    move |synced, actor, ctx| match synced {
                        Ok(()) => actor.deliver(jobs, how, reply, ctx),
                        Err(e) => {
                            actor.give_back(jobs, how, ctx);
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                ));
            }
        }
    }

    /// Sends jobs to their fetcher; if it has gone, they go back where they were.
    fn deliver(&mut self, jobs: Vec<Job>, how: HandOut, reply: Reply, ctx: &mut Context<Self>) {
        if let Err(Ok(jobs)) = reply.send(Ok(jobs)) {
            tracing::debug!(queue = %self.name, jobs = jobs.len(), "fetching client left; jobs go back");
            self.give_back(jobs, how, ctx);
        }
    }

    /// Undoes a hand-out whose jobs never reached their fetcher, and offers them to
    /// the fetches parked meanwhile.
    fn give_back(&mut self, jobs: Vec<Job>, how: HandOut, ctx: &mut Context<Self>) {
        let change = match how {
            HandOut::Taken => Change::Returned { jobs },
            HandOut::Leased => Change::LeaseReleased {
                ids: jobs.iter().map(|j| j.id).collect(),
            },
        };
        self.commit_quietly(change, ctx);
        self.serve_waiters(ctx);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use crate::queue::error::QueueError;
    use crate::queue::messages::{Arrival, Enqueue, Fetch, GetCounters};
    use crate::queue::testing::{enqueue, fetch, job, start_queue};

    #[actix::test]
    async fn a_fetch_whose_caller_left_puts_the_jobs_back_at_the_head() {
        let (addr, _dir) = start_queue();
        enqueue(&addr, vec![job(1), job(2), job(3)], None).await;
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let abandoned = Fetch {
            max: 2,
            lease: None,
            wait: None,
            reply,
        };
        assert!(addr.send(abandoned).await.is_ok());
        let counters = addr.send(GetCounters).await.ok().and_then(Result::ok);
        assert_eq!(counters.map(|c| (c.ready, c.processed)), Some((3, 0)));
        // The returned job still holds its uniq key.
        let dup = addr
            .send(Enqueue {
                jobs: vec![job(1)],
                due_ms: None,
                arrival: Arrival::Posted,
            })
            .await;
        assert_eq!(dup.ok(), Some(Err(QueueError::Duplicate)));
        let ids: Vec<u64> = fetch(&addr, 3)
            .await
            .unwrap_or_default()
            .iter()
            .map(|j| j.id.0)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
