//! What `job show` and the studio say of a pipeline.

use berth_core::api::JobView;
use berth_core::job::{JobRecord, PipelineRun};
use berth_core::pipeline::run::StepState;
use berth_store::Kind;
use serde_json::{Value, json};

use crate::AppState;

/// Puts each running step's child status, as it is now, in a pipeline's view (the driver
/// stores a step's state when it changes, not each status its child passes through).
pub async fn add_live_status(state: &AppState, view: &mut JobView) {
    let Some(Value::Object(steps)) = view.pipeline.as_mut().and_then(|p| p.get_mut("jobs")) else {
        return;
    };
    for step in steps.values_mut() {
        let Some(job) = step.get("job").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        if step.get("status").and_then(Value::as_str) == Some("Running")
            && let Ok(Some(child)) = state.store.get::<JobRecord>(Kind::Job, &job).await
        {
            step["status"] = json!(child.value.state.status().as_str());
        }
    }
}

/// What `job show` says of a pipeline: each step's job, status, component and reuse.
pub fn summary(run: &PipelineRun) -> Value {
    let steps: serde_json::Map<String, Value> = run
        .steps
        .iter()
        .map(|(name, s)| {
            let planned = run.plan.steps.get(name);
            let mut v = json!({
                "type": planned.map(|p| p.kind),
                "status": match s.state {
                    StepState::Waiting => "NotStarted".to_string(),
                    StepState::Skipped => "Skipped".to_string(),
                    StepState::Reused => "Completed".to_string(),
                    _ => s.status.clone().unwrap_or_default(),
                },
            });
            if let Some(j) = &s.job {
                v["job"] = json!(j);
            }
            if let Some(r) = &s.reused_from {
                v["reused_from"] = json!(r);
            }
            if let Some(m) = &s.message {
                v["message"] = json!(m);
            }
            if let Some(c) = planned.and_then(|p| p.component.as_ref()) {
                v["component"] = json!(c);
            }
            (name.clone(), v)
        })
        .collect();
    json!({"jobs": steps, "settings": run.plan.settings})
}
