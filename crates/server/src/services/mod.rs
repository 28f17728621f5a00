//! Services: what the API does, separate from how HTTP carries it.

pub mod asset_files;
#[cfg(feature = "kubernetes")]
pub mod clusters;
#[cfg(not(feature = "kubernetes"))]
#[path = "clusters_off.rs"]
pub mod clusters;
pub mod components;
pub mod data;
pub mod deployments;
pub mod endpoints;
pub mod environments;
pub mod job_outputs;
pub mod jobs;
pub mod leftovers;
pub mod mlflow_models;
pub mod models;
pub mod pipeline_reuse;
pub mod pipelines;
pub mod placement;
pub mod pod_files;
pub mod records;
pub mod resources;
pub mod revisions;
pub mod routes;
pub mod sweeps;
pub mod versions;
