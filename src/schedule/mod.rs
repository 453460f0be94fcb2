//! Recurring jobs: named cron schedules, each posting a job to a queue at every slot
//! ([`state`] holds them and the only code that changes them; the [`actor`] owns
//! the state, logs its changes and fires the runs).

pub(crate) mod actor;
pub(crate) mod state;
