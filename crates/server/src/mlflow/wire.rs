//! Experiments, runs, metrics and logged models as MLflow's JSON has them.

use berth_store::tracking::{Experiment, LoggedModel, Metric, Run, RunInfo};
use serde_json::{Value, json};

fn tags(t: &std::collections::BTreeMap<String, String>) -> Vec<Value> {
    t.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

/// An experiment.
pub fn experiment(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.id.to_string(),
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
        "tags": tags(&e.tags),
    })
}

/// A run's status: its job's, when it is a job's run, else what was last set.
pub fn status(info: &RunInfo) -> &str {
    let own_run = info.job_name.as_deref() == Some(info.run_id.as_str());
    match info.job_status.as_deref().filter(|_| own_run) {
        Some("NotStarted" | "Queued" | "Preparing") => "SCHEDULED",
        Some("Running" | "Finalizing") => "RUNNING",
        Some("Completed") => "FINISHED",
        Some("Failed") => "FAILED",
        Some("Canceled") => "KILLED",
        _ => &info.status,
    }
}

/// What a run is.
pub fn run_info(i: &RunInfo) -> Value {
    let mut v = json!({
        "run_id": i.run_id,
        "run_uuid": i.run_id,
        "run_name": i.run_name,
        "experiment_id": i.experiment_id.to_string(),
        "user_id": i.user_id,
        "status": status(i),
        "start_time": i.start_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle_stage,
    });
    if let Some(end) = i.end_time {
        v["end_time"] = json!(end);
    }
    v
}

/// A number as MLflow's JSON has it: NaN and the infinities as strings.
pub fn number(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// One metric point.
pub fn metric(m: &Metric) -> Value {
    json!({"key": m.key, "value": number(m.value), "timestamp": m.timestamp, "step": m.step})
}

/// A run with its data.
pub fn run(r: &Run) -> Value {
    json!({
        "info": run_info(&r.info),
        "data": {
            "metrics": r.metrics.iter().map(metric).collect::<Vec<_>>(),
            "params": tags(&r.params),
            "tags": tags(&r.tags),
        },
        "inputs": {},
        "outputs": {},
    })
}

/// A logged model.
pub fn logged_model(m: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": m.model_id,
        "experiment_id": m.experiment_id.to_string(),
        "name": m.name,
        "artifact_uri": m.artifact_uri,
        "status": m.status,
        "creation_timestamp_ms": m.creation_time,
        "last_updated_timestamp_ms": m.last_update,
        "tags": tags(&m.tags),
    });
    if let Some(r) = &m.source_run_id {
        info["source_run_id"] = json!(r);
    }
    if let Some(t) = &m.model_type {
        info["model_type"] = json!(t);
    }
    json!({"info": info, "data": {"params": tags(&m.params), "metrics": []}})
}

/// A metric value as MLflow's JSON has it, serialized without building a `Value`.
pub struct Num(pub f64);

impl serde::Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_nan() => s.serialize_str("NaN"),
            f64::INFINITY => s.serialize_str("Infinity"),
            f64::NEG_INFINITY => s.serialize_str("-Infinity"),
            v => s.serialize_f64(v),
        }
    }
}

/// One point of a history, for the long answers of `get-history`.
#[derive(serde::Serialize)]
pub struct Point<'a> {
    /// The metric.
    pub key: &'a str,
    /// Its value.
    pub value: Num,
    /// When (ms).
    pub timestamp: i64,
    /// Step.
    pub step: i64,
}

/// A page of a history.
#[derive(serde::Serialize)]
pub struct History<'a> {
    /// The points.
    pub metrics: Vec<Point<'a>>,
    /// Where the next page starts, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One page of `items` from `offset`, at most `max`, as `{<field>: [...]}` with the
/// `next_page_token` of the next page when there is one.
pub fn page<T>(
    field: &str,
    items: &[T],
    offset: usize,
    max: usize,
    each: impl Fn(&T) -> Value,
) -> Value {
    let shown: Vec<Value> = items.iter().skip(offset).take(max).map(each).collect();
    let mut out = json!({ field: shown });
    if offset + max < items.len() {
        out["next_page_token"] = json!((offset + max).to_string());
    }
    out
}
