//! Handing jobs to a fetcher, whether it asked just now or was parked.
//!
//! Jobs are taken (or leased) by a logged change first. Taken jobs reach the fetcher
//! only once that change is as durable as the fsync policy requires; leased jobs at
//! once (a lost grant only re-delivers the job). A fetcher that has gone by then, or a
//! change that never became durable, puts the jobs back where they were, so a job is
//! never lost with a discarded reply.
//!
//! Each leased job is one *delivery* of the queue, numbered by the queue's counter:
//! its [`DeliveryToken`] goes to the fetcher with the job, and acks, failure reports
//! and extensions must show it (`messages.rs`), so a worker whose lease ran out cannot
//! act on the job once someone else has leased it.

use actix::prelude::*;

use crate::clock::{now_ms, now_us};
use crate::queue::actor::QueueActor;
use crate::queue::messages::{Handout, LeaseRequest, Reply};
use crate::queue::state::{Change, DeliveryToken};
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
    /// Takes (or leases) up to `max` jobs for a fetcher and delivers them: taken jobs
    /// once the change is durable as the fsync policy requires, leased jobs at once.
    pub(super) fn hand_out(
        &mut self,
        max: usize,
        lease: Option<LeaseRequest>,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        // Never below the wall clock in microseconds: under `everysec` or `no` a crash
        // can lose the record of a lease already answered, and the numbers it used
        // must not be handed out again after the restart (its holder would ack the
        // new holder's delivery). The counter runs ahead of the clock only while more
        // than one lease a microsecond is handed out, and only by that excess: far
        // less than any restart takes.
        let first_delivery = self.state.next_delivery().max(now_us());
        let (how, change) = match lease {
            None => (HandOut::Taken, Change::Taken { count: max }),
            Some(lease) => (
                HandOut::Leased,
                Change::Leased {
                    count: max,
                    deadline_ms: now_ms().saturating_add(lease.duration_ms),
                    worker: lease.worker,
                    first_delivery: Some(first_delivery),
                },
            ),
        };
        // A lease grant is answered without waiting for its fsync: losing it in a
        // crash can only re-deliver the job, which a lease allows anyway (as when it
        // runs out). The ack that ends the lease waits, and the log is written in
        // order, so an acknowledged ack never outlives a lost grant. A plain fetch
        // takes the job for good and waits.
        let committed = match how {
            HandOut::Taken => self.commit(change, ctx),
            HandOut::Leased => self
                .commit_unawaited(change, ctx)
                .map(|jobs| (jobs, Durable::Now)),
        };
        match committed {
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
            Ok((jobs, durable)) => {
                // Named now, from the change itself: by the time the change is durable
                // the lease may have run out and the job gone to someone else.
                let tokens = match how {
                    HandOut::Taken => Vec::new(),
                    HandOut::Leased => (first_delivery..)
                        .zip(&jobs)
                        .map(|(delivery, job)| DeliveryToken {
                            job: job.id,
                            delivery,
                        })
                        .collect(),
                };
                let attempts = match how {
                    HandOut::Taken => Vec::new(),
                    HandOut::Leased => jobs.iter().map(|j| self.state.attempts(j.id)).collect(),
                };
                let handout = Handout {
                    jobs,
                    tokens,
                    attempts,
                };
                if let Durable::Now = durable {
                    self.deliver(handout, how, reply, ctx);
                    return;
                }
                ctx.spawn(durable.wait().into_actor(self).map(
                    move |synced, actor, ctx| match synced {
                        Ok(()) => actor.deliver(handout, how, reply, ctx),
                        Err(e) => {
                            actor.give_back(handout, how, ctx);
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                ));
            }
        }
    }

    /// Sends jobs to their fetcher; if it has gone, they go back where they were.
    fn deliver(&mut self, handout: Handout, how: HandOut, reply: Reply, ctx: &mut Context<Self>) {
        if let Err(Ok(handout)) = reply.send(Ok(handout)) {
            tracing::debug!(queue = %self.name, jobs = handout.len(), "fetching client left; jobs go back");
            self.give_back(handout, how, ctx);
        }
    }

    /// Undoes a hand-out whose jobs never reached their fetcher, and offers them to
    /// the fetches parked meanwhile. Leased jobs go back only if still on the
    /// deliveries handed out here.
    fn give_back(&mut self, handout: Handout, how: HandOut, ctx: &mut Context<Self>) {
        let change = match how {
            HandOut::Taken => Change::Returned { jobs: handout.jobs },
            HandOut::Leased => Change::LeaseReleased {
                ids: handout.tokens.iter().map(|t| t.job).collect(),
                deliveries: handout.tokens.iter().map(|t| t.delivery).collect(),
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
                expires_ms: None,
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
