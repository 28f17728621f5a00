//! One module per group of verbs.

pub mod assets;
#[cfg(feature = "kubernetes")]
pub mod extension;
pub mod fetch;
pub mod job;
pub mod job_run;
pub mod job_sampler;
pub mod resources;
pub mod router;
pub mod serving;
