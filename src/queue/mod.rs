//! A queue: its state and the only code that changes it ([`state`]), the actor that
//! owns that state with its timer and parked fetches ([`actor`]), and the directory
//! that finds a queue's actor by name ([`directory`]).

pub(crate) mod actor;
pub(crate) mod directory;
mod head;
pub(crate) mod job;
pub(crate) mod state;
