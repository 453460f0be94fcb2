//! Parked long-poll fetches (`GET /q/NAME?wait=S`): a fetch that finds no job waits in
//! line until one arrives or its time is up.
//!
//! Whatever may make a job ready (an enqueue, the timer, the queue opening, a failed or
//! retried job, jobs a departed fetcher left behind) calls
//! [`QueueActor::serve_waiters`]; a waiter whose time is up gets the answer it would
//! have had without waiting.
//!
//! A long-poll on a queue that does not exist waits in the
//! [`QueueDirectory`](super::directory::QueueDirectory) instead, as a
//! [`PendingWaiter`], so that waiting never creates a queue; whoever creates the queue
//! hands the directory's waiters to its new actor ([`Adopt`]).
//!
//! Once the server is stopping, no fetch parks and every parked one is answered
//! [`QueueError::Stopping`].

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::queue::actor::QueueActor;
use crate::queue::error::QueueError;
use crate::queue::messages::{Fetch, LeaseRequest, Reply};
use crate::queue::totals::ParkedCount;

/// A parked fetch.
pub(super) struct Waiter {
    /// Finds the waiter again when its time is up.
    id: u64,
    max: usize,
    lease: Option<LeaseRequest>,
    reply: Reply,
    /// Its time-out, cancelled when it is served first.
    timeout: SpawnHandle,
    /// Counted in the server's totals while it waits.
    _parked: ParkedCount,
}

/// A long-poll on a queue that does not exist (yet), kept by the directory.
pub(super) struct PendingWaiter {
    /// Finds the waiter again when its request ends.
    pub(super) id: u64,
    pub(super) max: usize,
    pub(super) lease: Option<LeaseRequest>,
    /// When its wait is over.
    pub(super) deadline: Instant,
    pub(super) reply: Reply,
}

/// The long-polls that waited for a queue which now exists, handed to its new actor
/// by the directory that created it (before any other message can reach it from the
/// creating request). Each is then served like a fetch that arrived now, waiting for
/// what is left of its time.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Adopt(pub(super) Vec<PendingWaiter>);

impl Handler<Adopt> for QueueActor {
    type Result = ();

    fn handle(&mut self, msg: Adopt, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for waiter in msg.0 {
            if waiter.reply.is_closed() {
                continue;
            }
            let fetch = Fetch {
                max: waiter.max,
                lease: waiter.lease,
                wait: Some(waiter.deadline.saturating_duration_since(now)),
                reply: waiter.reply,
            };
            <Self as Handler<Fetch>>::handle(self, fetch, ctx);
        }
    }
}

impl QueueActor {
    /// Hands ready jobs to parked fetches, oldest first.
    pub(super) fn serve_waiters(&mut self, ctx: &mut Context<Self>) {
        while self.state.is_open() && self.state.ready_len() > 0 {
            let Some(waiter) = self.waiters.pop_front() else {
                break;
            };
            ctx.cancel_future(waiter.timeout);
            // A waiter whose client has gone never takes a job.
            if !waiter.reply.is_closed() {
                self.hand_out(waiter.max, waiter.lease, waiter.reply, ctx);
            }
        }
    }

    /// Parks a fetch for up to `wait`, unless the queue already has as many waiters
    /// as it allows.
    pub(super) fn park(
        &mut self,
        max: usize,
        lease: Option<LeaseRequest>,
        wait: Duration,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        if self.is_stopping() {
            let _ = reply.send(Err(QueueError::Stopping));
            return;
        }
        self.forget_gone_waiters(ctx);
        if self.waiters.len() >= self.config.max_waiters {
            let _ = reply.send(Err(QueueError::TooManyWaiters(self.config.max_waiters)));
            return;
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        let timeout = ctx.run_later(wait, move |actor, _| actor.time_out(id));
        self.waiters.push_back(Waiter {
            id,
            max,
            lease,
            reply,
            timeout,
            _parked: ParkedCount::new(&self.config.totals),
        });
    }

    /// Drops waiters whose clients left, so they do not count against the limit nor
    /// in what the overview and `/metrics` show.
    pub(super) fn forget_gone_waiters(&mut self, ctx: &mut Context<Self>) {
        let mut gone = Vec::new();
        self.waiters.retain(|w| {
            let alive = !w.reply.is_closed();
            if !alive {
                gone.push(w.timeout);
            }
            alive
        });
        for handle in gone {
            ctx.cancel_future(handle);
        }
    }

    /// A parked fetch waited its full time: the usual answer for an empty (or closed)
    /// queue.
    fn time_out(&mut self, id: u64) {
        if let Some(at) = self.waiters.iter().position(|w| w.id == id) {
            if let Some(waiter) = self.waiters.remove(at) {
                let _ = waiter.reply.send(Err(self.refusal()));
            }
        }
    }

    /// The answer to a fetch that gets no job.
    pub(super) fn refusal(&self) -> QueueError {
        if self.state.is_open() {
            QueueError::Empty
        } else {
            QueueError::Closed
        }
    }

    /// Answers every parked fetch now: with the usual empty answer when the queue is
    /// deleted, with [`QueueError::Stopping`] once the server is stopping.
    pub(super) fn release_waiters(&mut self, ctx: &mut Context<Self>) {
        let refusal = if self.is_stopping() {
            QueueError::Stopping
        } else {
            self.refusal()
        };
        for waiter in self.waiters.drain(..) {
            ctx.cancel_future(waiter.timeout);
            let _ = waiter.reply.send(Err(refusal.clone()));
        }
    }
}
