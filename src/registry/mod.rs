//! The worker registry: which workers are registered on which queues ([`state`],
//! owned by the [`actor`]), and their processed/failed counters ([`counts`]).

pub(crate) mod actor;
pub(crate) mod counts;
pub(crate) mod state;
