//! The driver of one pipeline: each round reads the running steps' children, decides the next
//! moves (`berth_core::pipeline::run::decide`), reuses or submits the steps that are ready,
//! and writes the pipeline's record when something changed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use berth_core::api::JobCreateRequest;
use berth_core::job::{FailureKind, JobRecord, JobState, JobStatus, PipelineRun, ResolvedOutput};
use berth_core::pipeline::binding::{self, Binding};
use berth_core::pipeline::plan::Plan;
use berth_core::pipeline::run::{Outcome, StepState, decide};
use berth_core::pipeline::spec::StepKind;
use berth_store::{Kind, Stored};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::compute_of;
use crate::AppState;
use crate::error::ApiError;
use crate::services::driven::{self, log};
use crate::services::pipeline_reuse;

/// Starts the driver of pipeline `name` (boxed: the driver submits jobs, which may be
/// pipelines).
pub fn start(state: AppState, name: String) {
    let driver: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(
            async move { driven::rounds(&state, &name, "pipeline", || step(&state, &name)).await },
        );
    tokio::spawn(driver);
}

/// Starts the drivers of the unfinished pipelines (at server start).
pub async fn recover(state: &AppState) {
    driven::recover(state, |j| j.pipeline.is_some(), start).await;
}

/// The step's state as its child job's status says.
fn state_of(status: JobStatus) -> StepState {
    match status {
        JobStatus::Completed => StepState::Completed,
        JobStatus::Failed | JobStatus::Canceled => StepState::Failed,
        _ => StepState::Running,
    }
}

/// The outputs each done step made: `(step, output) → (type, path)`.
async fn made(
    state: &AppState,
    run: &PipelineRun,
) -> Result<BTreeMap<(String, String), (String, String)>, ApiError> {
    let mut out = BTreeMap::new();
    for (step, s) in &run.steps {
        let Some(job) = s
            .reused_from
            .as_ref()
            .or(s.job.as_ref())
            .filter(|_| s.state.done())
        else {
            continue;
        };
        let read;
        let outputs = match &s.outputs {
            Some(o) => o,
            None => {
                let Some(child) = state.store.get::<JobRecord>(Kind::Job, job).await? else {
                    continue;
                };
                read = child.value.outputs;
                &read
            }
        };
        for (o, r) in outputs {
            let kind = serde_json::to_value(r.data_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "uri_folder".into());
            out.insert((step.clone(), o.clone()), (kind, r.path.clone()));
        }
    }
    Ok(out)
}

/// Reads the running steps' children; returns the reuse keys of those that completed, with
/// their jobs (recorded once the next steps are on their way).
async fn observe(
    state: &AppState,
    run: &mut PipelineRun,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut completed = Vec::new();
    for s in run.steps.values_mut() {
        let Some(job) = &s.job else { continue };
        if s.state != StepState::Running {
            continue;
        }
        let Some(child) = state.store.get::<JobRecord>(Kind::Job, job).await? else {
            s.state = StepState::Failed;
            s.status = Some("deleted".into());
            continue;
        };
        let status = child.value.state.status();
        s.state = state_of(status);
        if s.state == StepState::Completed {
            s.outputs = Some(child.value.outputs.clone());
        }
        if s.state != StepState::Running {
            s.status = Some(status.as_str().to_string());
        }
        if s.state == StepState::Completed
            && let Some(key) = &s.reuse_key
        {
            completed.push((key.clone(), job.clone()));
        }
    }
    Ok(completed)
}

/// The child job file of step `step`, named and placed in the pipeline's experiment.
fn child_file(record: &JobRecord, plan: &Plan, step: &str, job: &mut Value) {
    job["name"] = json!(format!("{}_{step}", record.name));
    job["experiment_name"] = json!(record.experiment_name);
    if job.get("display_name").is_none() {
        job["display_name"] = json!(step);
    }
    let kind = plan.steps.get(step).map(|s| s.kind);
    if kind == Some(StepKind::Pipeline) {
        return;
    }
    if kind == Some(StepKind::Command)
        && let Some(ds) = &plan.settings.default_datastore
    {
        // Outputs without a path go to the default datastore, where Azure ML puts them.
        let child = format!("{}_{step}", record.name);
        if let Some(Value::Object(outputs)) = job.get_mut("outputs") {
            for (o, v) in outputs.iter_mut() {
                if v.is_null() {
                    *v = json!({});
                }
                let Some(m) = v.as_object_mut() else { continue };
                if m.contains_key("path") {
                    continue;
                }
                let file = m.get("type").and_then(Value::as_str) == Some("uri_file");
                let path = format!(
                    "azureml://datastores/{ds}/paths/azureml/{child}/{o}/{}",
                    if file { o.as_str() } else { "" }
                );
                m.insert("path".into(), json!(path));
            }
        }
    }
    let compute = compute_of(job, plan);
    match kind {
        Some(StepKind::Sweep) => {
            job["compute"] = json!(compute);
            if let Some(t) = job.get_mut("trial").and_then(Value::as_object_mut) {
                t.remove("compute");
            }
        }
        _ => job["compute"] = json!(compute),
    }
}

/// Starts step `step`: reuses an earlier run when allowed, else submits its child job (or
/// adopts the one a crash left submitted but unrecorded).
async fn launch(
    state: &AppState,
    record: &JobRecord,
    run: &mut PipelineRun,
    made: &BTreeMap<(String, String), (String, String)>,
    step: &str,
) -> Result<(), String> {
    let planned = run.plan.steps[step].clone();
    let mut job = run.plan.materialize(step, made)?;
    child_file(record, &run.plan, step, &mut job);
    let child_name = format!("{}_{step}", record.name);
    let s = run.steps.get_mut(step).ok_or("no such step")?;
    if planned.deterministic && planned.kind == StepKind::Command {
        let key = pipeline_reuse::key(&job, Path::new(&planned.base_dir)).await;
        if !run.plan.settings.force_rerun
            && let Some((earlier, outputs)) = pipeline_reuse::find(state, &key).await
        {
            log(
                record,
                &format!("step {step} reuses the outputs of job {earlier}"),
            )
            .await;
            s.state = StepState::Reused;
            s.reused_from = Some(earlier);
            s.outputs = Some(outputs);
            s.status = Some(JobStatus::Completed.as_str().to_string());
            return Ok(());
        }
        s.reuse_key = Some(key);
    }
    let adopted = state
        .store
        .get::<JobRecord>(Kind::Job, &child_name)
        .await
        .ok()
        .flatten()
        .filter(|c| c.value.parent_job_name.as_deref() == Some(record.name.as_str()));
    let submitted = match adopted {
        Some(c) => c.value.name,
        None => {
            let req = JobCreateRequest {
                file: format!("{} (step {step})", run.file),
                yaml: job.to_string(),
                base_dir: planned.base_dir.clone(),
                set: Vec::new(),
                parent_job_name: Some(record.name.clone()),
            };
            match crate::services::jobs::create(state, req).await {
                Ok(v) => v.name,
                Err(e) => {
                    let message = format!("step {step} could not be submitted: {e}");
                    s.state = StepState::Failed;
                    s.status = Some(JobStatus::Failed.as_str().to_string());
                    s.message = Some(message.clone());
                    return Err(message);
                }
            }
        }
    };
    log(record, &format!("step {step} started as job {submitted}")).await;
    s.job = Some(submitted);
    s.state = StepState::Running;
    s.status = Some(JobStatus::Running.as_str().to_string());
    Ok(())
}

/// The pipeline's outputs: each one a done step's output bound to it.
fn pipeline_outputs(
    run: &PipelineRun,
    made: &BTreeMap<(String, String), (String, String)>,
) -> BTreeMap<String, ResolvedOutput> {
    let mut out = BTreeMap::new();
    for (step, planned) in &run.plan.steps {
        let outputs = planned.job.get("outputs").and_then(Value::as_object);
        for (o, v) in outputs.into_iter().flatten() {
            let text = v.as_str().or_else(|| v.get("path").and_then(Value::as_str));
            let Some(Ok(Some(Binding::ParentOutput(z)))) = text.map(binding::parse) else {
                continue;
            };
            if let Some((kind, path)) = made.get(&(step.clone(), o.clone()))
                && let Ok(data_type) = serde_json::from_value(json!(kind))
            {
                out.insert(
                    z,
                    ResolvedOutput {
                        path: path.clone(),
                        data_type,
                    },
                );
            }
        }
    }
    out
}

/// One round of the driver; true once the pipeline has ended.
async fn step(state: &AppState, name: &str) -> Result<bool, ApiError> {
    let Some(stored) = state.store.get::<JobRecord>(Kind::Job, name).await? else {
        return Ok(true);
    };
    let mut record = stored.value.clone();
    let Some(mut run) = record.pipeline.clone() else {
        return Ok(true);
    };
    let completed = observe(state, &mut run).await?;
    if record.state.status().is_terminal() {
        // Canceled: so are its running steps.
        for s in run.steps.values().filter(|s| s.state == StepState::Running) {
            if let Some(j) = &s.job {
                let _ = crate::services::jobs::cancel(state, j).await;
            }
        }
        return Ok(true);
    }
    let graph = run
        .plan
        .graph()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let states: BTreeMap<String, StepState> = run
        .steps
        .iter()
        .map(|(k, v)| (k.clone(), v.state))
        .collect();
    let decision = decide(&graph, &states, run.plan.settings.continue_on_step_failure);
    for s in &decision.cancel {
        if let Some(j) = run.steps.get(s).and_then(|r| r.job.clone()) {
            log(&record, &format!("step {s} canceled: another step failed")).await;
            let _ = crate::services::jobs::cancel(state, &j).await;
        }
    }
    for s in &decision.skip {
        if let Some(r) = run.steps.get_mut(s) {
            log(
                &record,
                &format!("step {s} skipped: a step it needs failed"),
            )
            .await;
            r.state = StepState::Skipped;
        }
    }
    let mut made = made(state, &run).await?;
    if decision.end.is_none() {
        for s in &decision.start {
            if let Err(m) = launch(state, &record, &mut run, &made, s).await {
                log(&record, &m).await;
            }
        }
    }
    // A reused step may have made more steps ready: decide again at once.
    let again = decision.start.iter().any(|s| run.steps[s].state.done());
    if again {
        made = self::made(state, &run).await?;
    }
    record.outputs = pipeline_outputs(&run, &made);
    for (key, job) in completed {
        pipeline_reuse::remember(state, &key, &job).await;
    }
    record.pipeline = Some(run);
    if let Some(end) = decision.end {
        return finish(state, &stored, record, end).await;
    }
    if record == stored.value {
        // Nothing changed (a child moved on inside its own run): no write.
        return Ok(false);
    }
    state
        .store
        .update(
            Kind::Job,
            name,
            stored.resource_version,
            Some(JobStatus::Running.as_str()),
            &record,
        )
        .await?;
    if again {
        state.jobs.notify();
    }
    Ok(false)
}

/// Ends the pipeline: Completed, or Failed naming the steps that failed.
async fn finish(
    state: &AppState,
    stored: &Stored<JobRecord>,
    mut record: JobRecord,
    end: Outcome,
) -> Result<bool, ApiError> {
    let started_at = record.state.started_at().unwrap_or(record.created_at);
    let ended_at = OffsetDateTime::now_utc();
    let (state_now, line) = match end {
        Outcome::Completed => (
            JobState::Completed {
                started_at,
                ended_at,
            },
            "every step completed".to_string(),
        ),
        Outcome::Failed(steps) => {
            let unsubmitted: Vec<&str> = record
                .pipeline
                .iter()
                .flat_map(|r| r.steps.values())
                .filter_map(|s| s.message.as_deref())
                .collect();
            let message = if unsubmitted.is_empty() {
                format!(
                    "step{} {} failed; `berth job show --name {}_<step>` says why",
                    if steps.len() == 1 { "" } else { "s" },
                    steps.join(", "),
                    record.name
                )
            } else {
                unsubmitted.join("; ")
            };
            (
                JobState::Failed {
                    started_at: Some(started_at),
                    ended_at,
                    exit_code: None,
                    kind: FailureKind::StepFailed,
                    message: message.clone(),
                },
                message,
            )
        }
    };
    log(&record, &line).await;
    let status = state_now.status();
    record.state = state_now;
    state
        .store
        .update(
            Kind::Job,
            &record.name.clone(),
            stored.resource_version,
            Some(status.as_str()),
            &record,
        )
        .await?;
    state.jobs.notify();
    Ok(true)
}
