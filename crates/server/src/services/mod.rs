//! Services: what the API does, separate from how HTTP carries it.

pub mod jobs;
pub mod resources;
