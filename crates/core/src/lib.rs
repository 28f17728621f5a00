//! Berth's domain types: specs parsed from YAML with positions, validation, job states and the
//! API's request and response shapes. No I/O and no async here.

pub mod address;
pub mod api;
pub mod conda;
pub mod extension;
pub mod interpolate;
pub mod job;
pub mod mlflow_env;
pub mod names;
pub mod overrides;
pub mod pipeline;
pub mod quantity;
pub mod resources;
pub mod secret;
pub mod serving;
pub mod spec;
pub mod sweep;
pub mod yaml;

pub use quantity::Quantity;
pub use resources::Resources;
