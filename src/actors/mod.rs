//! The actors that own presque's state: one [`queue::QueueActor`] per queue and one
//! [`registry::WorkerRegistry`].

pub mod queue;
pub mod registry;
pub mod snapshot;
