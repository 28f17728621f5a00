//! Pipeline jobs: the parent is a job that runs no command; at submission every step is made
//! ready and the wiring checked whole (nothing is stored when anything is wrong); then its
//! driver submits each step as an ordinary child job as soon as the outputs it reads exist,
//! reuses an earlier run's outputs for a deterministic step whose inputs are unchanged, and
//! ends the pipeline by Azure ML's rules. The driver keeps its progress in the store, so a
//! restarted server takes it up again where it was.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use berth_core::api::{JobCreateRequest, JobView};
use berth_core::job::{
    FailureKind, JobRecord, JobState, JobStatus, PipelineRun, ResolvedOutput, StepRun,
};
use berth_core::pipeline::binding::{self, Binding};
use berth_core::pipeline::plan::{Plan, Resolved};
use berth_core::pipeline::run::{Outcome, StepState, decide};
use berth_core::pipeline::spec::{PipelineSpec, StepKind};
use berth_core::spec::compute::LOCAL_COMPUTE;
use berth_core::spec::instance_type::InstanceType;
use berth_core::spec::job::JobSpec;
use berth_core::sweep::spec::SweepSpec;
use berth_core::yaml::{Source, SpecError};
use berth_scheduler::workdir::JobDir;
use berth_store::{Kind, Stored};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::{components, pipeline_reuse};

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

/// Resolves every step's component and builds the plan; a step that is itself a pipeline is
/// planned too, so its problems are found now.
fn plan_of<'a>(
    state: &'a AppState,
    src: &'a Source<'a>,
    spec: &'a PipelineSpec,
    base_dir: &'a Path,
) -> Pin<Box<dyn Future<Output = Result<Plan, ApiError>> + Send + 'a>> {
    Box::pin(async move {
        let mut resolved: BTreeMap<String, Resolved> = BTreeMap::new();
        for (name, step) in &spec.steps {
            if let Some(r) = &step.component {
                resolved.insert(
                    name.clone(),
                    components::resolve(state, src, name, r, base_dir).await?,
                );
            }
        }
        let plan = Plan::build(spec, &base_dir.to_string_lossy(), &resolved).map_err(|e| {
            ApiError::spec(
                src.error_near(
                    "jobs",
                    None,
                    format!("the pipeline's steps do not fit together:\n{e}"),
                )
                .hint("fix every problem listed; nothing was stored"),
            )
        })?;
        check_steps(state, src, &plan).await?;
        Ok(plan)
    })
}

/// Each step's job file as it will be submitted parses, and its compute exists.
async fn check_steps(state: &AppState, src: &Source<'_>, plan: &Plan) -> Result<(), ApiError> {
    let graph = plan
        .graph()
        .map_err(|e| ApiError::spec(SpecError::new(e.to_string())))?;
    let pending: BTreeMap<(String, String), (String, String)> = graph
        .steps
        .iter()
        .flat_map(|(s, w)| {
            w.outputs.iter().map(move |(o, t)| {
                (
                    (s.clone(), o.clone()),
                    (t.clone(), format!("/pending/{s}/{o}")),
                )
            })
        })
        .collect();
    if let Some(ds) = &plan.settings.default_datastore
        && crate::services::resources::datastore_root(state, ds)
            .await?
            .is_none()
    {
        return Err(ApiError::spec(
            src.error_near("default_datastore", None, format!("datastore `{ds}` does not exist"))
                .hint(format!("create it with `berth datastore create --name {ds} --path <folder>`, or leave `default_datastore` out to keep outputs in each step's folder")),
        ));
    }
    for (name, step) in &plan.steps {
        let near = |m: String| src.error_near(name, None, format!("step `{name}`: {m}"));
        let at = |m: String| ApiError::spec(near(m));
        let job = plan.materialize(name, &pending).map_err(at)?;
        let text = job.to_string();
        let file = format!("{} (step {name})", src.name);
        let step_src = Source::new(&file, &text);
        match step.kind {
            StepKind::Command => {
                let spec = JobSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
                spec.check_references().map_err(at)?;
            }
            StepKind::Sweep => {
                SweepSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
            }
            StepKind::Pipeline => {
                let inner = PipelineSpec::parse(&step_src).map_err(|e| at(e.to_string()))?;
                plan_of(state, &step_src, &inner, Path::new(&step.base_dir)).await?;
                continue;
            }
        }
        let compute = compute_of(&job, plan);
        if crate::services::resources::find_compute(state, &compute)
            .await?
            .is_none()
        {
            return Err(ApiError::spec(near(format!("compute `{compute}` does not exist")).hint(format!(
                "attach it with `berth compute attach --type local --name {compute}`, or see `berth compute list`"
            ))));
        }
    }
    Ok(())
}

/// The placeholder command job a pipeline's record holds: what `job show` says of it.
fn parent_spec(spec: &PipelineSpec, name: &str, plan: &Plan) -> JobSpec {
    JobSpec {
        name: Some(name.to_string()),
        display_name: spec.display_name.clone(),
        experiment_name: spec.experiment_name.clone(),
        description: spec.description.clone(),
        tags: spec.tags.clone(),
        command: String::new(),
        code: None,
        environment: None,
        environment_variables: BTreeMap::new(),
        compute: plan.settings.default_compute.clone(),
        instance_type: None,
        timeout_seconds: None,
        priority: Default::default(),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
    }
}

/// Accepts a pipeline file: every step made ready and checked, then stored, and its driver
/// started.
pub async fn create(state: &AppState, req: JobCreateRequest) -> Result<JobView, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let spec = berth_core::overrides::parse_with_sets(&src, &req.set, PipelineSpec::parse)
        .map_err(ApiError::spec)?;
    let base_dir = PathBuf::from(&req.base_dir);
    if !base_dir.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "base_dir `{}` must be an absolute path",
            req.base_dir
        )));
    }
    let plan = plan_of(state, &src, &spec, &base_dir).await?;
    let name = crate::services::jobs::free_name(state, spec.name.clone()).await?;
    let now = OffsetDateTime::now_utc();
    let workdir = state.home.join("jobs").join(&name);
    let steps = plan
        .steps
        .keys()
        .map(|s| {
            (
                s.clone(),
                StepRun {
                    state: StepState::Waiting,
                    job: None,
                    status: None,
                    reused_from: None,
                    reuse_key: None,
                    message: None,
                },
            )
        })
        .collect();
    let mut record = JobRecord {
        name: name.clone(),
        display_name: spec.display_name.clone().unwrap_or_else(|| name.clone()),
        experiment_name: spec
            .experiment_name
            .clone()
            .unwrap_or_else(|| crate::services::jobs::experiment_from(&base_dir)),
        compute: compute_of(&json!({}), &plan),
        instance_type: InstanceType::default_type(),
        base_dir: req.base_dir.clone(),
        workdir: workdir.to_string_lossy().into_owned(),
        inputs: Default::default(),
        outputs: Default::default(),
        created_at: now,
        state: JobState::Running {
            started_at: now,
            gpus: Vec::new(),
            supervisor_pid: 0,
            note: None,
        },
        upload_token: None,
        environment: None,
        tracking: None,
        parent_job_name: req.parent_job_name.clone(),
        sweep: None,
        spec: parent_spec(&spec, &name, &plan),
        pipeline: Some(PipelineRun {
            file: req.file.clone(),
            plan,
            steps,
        }),
    };
    record.tracking = Some(
        crate::mlflow::jobs::open_run(state, &record)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    tokio::fs::create_dir_all(JobDir::new(&workdir).log().parent().unwrap_or(&workdir))
        .await
        .map_err(|e| ApiError::Internal(format!("cannot make {}: {e}", workdir.display())))?;
    let inserted = state
        .store
        .insert(Kind::Job, &name, Some(JobStatus::Running.as_str()), &record)
        .await;
    if let Err(e) = inserted {
        let _ = state.store.purge_run(&name).await;
        let _ = tokio::fs::remove_dir_all(&workdir).await;
        return Err(e.into());
    }
    start(state.clone(), name.clone());
    let stored = crate::services::jobs::get(state, &name).await?;
    Ok(crate::services::jobs::view(state, &stored))
}

/// Starts the driver of pipeline `name` (boxed: the driver submits jobs, which may be
/// pipelines).
pub fn start(state: AppState, name: String) {
    let driver: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(drive(state, name));
    tokio::spawn(driver);
}

/// Starts the drivers of the unfinished pipelines (at server start).
pub async fn recover(state: &AppState) {
    let active = state
        .store
        .list_with_status::<JobRecord>(Kind::Job, &JobStatus::active_names())
        .await
        .unwrap_or_default();
    for job in active.into_iter().filter(|j| j.value.pipeline.is_some()) {
        start(state.clone(), job.value.name);
    }
}

async fn drive(state: AppState, name: String) {
    let mut changes = state.jobs.subscribe();
    loop {
        match step(&state, &name).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pipeline = %name, error = %e, "pipeline step failed; trying again")
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Appends a line to the pipeline's log.
async fn log(record: &JobRecord, line: &str) {
    use tokio::io::AsyncWriteExt;
    let path = JobDir::new(&record.workdir).log();
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        let _ = f.write_all(format!("[berth] {line}\n").as_bytes()).await;
    }
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
        let Some(child) = state.store.get::<JobRecord>(Kind::Job, job).await? else {
            continue;
        };
        for (o, r) in &child.value.outputs {
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
            && let Some(earlier) = pipeline_reuse::find(state, &key).await
        {
            log(
                record,
                &format!("step {step} reuses the outputs of job {earlier}"),
            )
            .await;
            s.state = StepState::Reused;
            s.reused_from = Some(earlier);
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
