//! Pipeline jobs: the parent is a job that runs no command; at submission every step is made
//! ready and the wiring checked whole (nothing is stored when anything is wrong, [`submit`]);
//! then its driver submits each step as an ordinary child job as soon as the outputs it reads
//! exist, reuses an earlier run's outputs for a deterministic step whose inputs are unchanged,
//! and ends the pipeline by Azure ML's rules ([`driver`]). The driver keeps its progress in the
//! store, so a restarted server takes it up again where it was.

mod driver;
mod submit;
mod view;

use berth_core::pipeline::plan::Plan;
use berth_core::spec::compute::LOCAL_COMPUTE;
use serde_json::Value;

pub use driver::{recover, start};
pub use submit::create;
pub use view::{add_live_status, summary};

/// The compute a step runs on: its own, else the pipeline's default, else the local compute;
/// `serverless` (Azure picks one) is the local compute.
pub fn compute_of(job: &Value, plan: &Plan) -> String {
    let c = job
        .get("compute")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| plan.settings.default_compute.clone())
        .unwrap_or_else(|| LOCAL_COMPUTE.into());
    berth_core::spec::compute::effective_compute(&c)
}
