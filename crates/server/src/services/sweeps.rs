//! Sweep jobs: the parent is a job that runs no command; its driver starts trials as child
//! jobs (the trial's command with its parameters filled in) as slots free up, stops those the
//! early termination policy names, keeps the best trial by the primary metric the trials log
//! to their MLflow runs, and ends the sweep when the trials are done, the limit is reached or
//! the timeout passes. The driver reads everything from the store, so a restarted server
//! takes it up again where it was.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use berth_core::api::{JobCreateRequest, JobView};
use berth_core::job::{FailureKind, JobRecord, JobState, JobStatus, SweepRun, SweepTrial};
use berth_core::spec::job::JobSpec;
use berth_core::sweep::rng::Rng;
use berth_core::sweep::sample::{self, Goal, Observation, Params};
use berth_core::sweep::spec::{Sampler, SweepSpec, trial_command};
use berth_core::sweep::terminate::TrialReports;
use berth_core::yaml::Source;
use berth_store::{Kind, Stored};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::driven::{self, log};

/// The `i`-th trial's job file (JSON, which is YAML): the trial with its parameters filled in.
fn trial_file(spec: &SweepSpec, parent: &str, i: usize, params: &Params) -> String {
    let mut t = spec.trial.clone();
    let command = t["command"].as_str().unwrap_or_default().to_string();
    t["command"] = json!(trial_command(&command, params));
    t["name"] = json!(format!("{parent}_{i}"));
    t["display_name"] = json!(format!("{parent} trial {i}"));
    if let Some(c) = &spec.compute
        && t.get("compute").is_none()
    {
        t["compute"] = json!(c);
    }
    for key in ["resources", "queue_settings"] {
        let given = &spec.trial_defaults[key];
        if !given.is_null() && t.get(key).is_none() {
            t[key] = given.clone();
        }
    }
    if let Some(e) = &spec.experiment_name {
        t["experiment_name"] = json!(e);
    }
    if t.get("inputs").is_none() && spec.inputs.is_object() {
        t["inputs"] = spec.inputs.clone();
    }
    if let Some(s) = spec.limits.trial_timeout {
        t["limits"] = json!({"timeout": s});
    }
    let tags: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
            )
        })
        .collect();
    t["tags"] = Value::Object(tags);
    t.to_string()
}

/// The parameters of trial `i`.
fn params_for(spec: &SweepSpec, parent: &str, i: usize, history: &[Observation]) -> Params {
    let base = |seed: Option<u64>| {
        seed.unwrap_or_else(|| {
            parent
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        })
    };
    match spec.sampler {
        Sampler::Grid => sample::grid(&spec.space)
            .ok()
            .and_then(|g| g.get(i).cloned())
            .unwrap_or_default(),
        Sampler::Random { seed } => sample::random(
            &spec.space,
            &mut Rng::new(base(seed).wrapping_add(i as u64)),
        ),
        Sampler::Bayesian { seed } => sample::bayesian(
            &spec.space,
            history,
            spec.goal,
            &mut Rng::new(base(seed).wrapping_add(i as u64)),
        ),
    }
}

/// A sweep whose `trial:` names a component (a file or `azureml:<name>...`), rewritten with
/// the command job its trials run (the sweep's `inputs` bind the component's); `None` for a
/// trial written as a command job.
async fn with_component_trial(
    state: &AppState,
    req: &JobCreateRequest,
    base_dir: &std::path::Path,
) -> Result<Option<String>, ApiError> {
    use berth_core::pipeline::spec::ComponentRef;
    use berth_core::pipeline::steps::{component_trial, space_names};
    let src = Source::new(&req.file, &req.yaml);
    let text = berth_core::overrides::apply(&src, &req.set).map_err(ApiError::spec)?;
    let Ok(mut doc) = serde_saphyr::from_str::<Value>(&text) else {
        // The sweep's own parse says what is wrong.
        return Ok(None);
    };
    let Some(reference) = doc
        .get("trial")
        .filter(|t| t.is_string())
        .and_then(ComponentRef::of)
    else {
        return Ok(None);
    };
    let comp =
        crate::services::components::resolve(state, &src, "trial", &reference, base_dir).await?;
    if comp.spec.kind != "command" {
        return Err(ApiError::spec(src.error_near(
            "trial",
            None,
            format!(
                "the trial's component {} is a {} component; a trial is a command component",
                comp.label, comp.spec.kind
            ),
        )));
    }
    let mut errors = Vec::new();
    let trial = component_trial(
        "trial",
        &comp,
        doc.get("inputs"),
        doc.get("outputs"),
        &space_names(doc.get("search_space")),
        &req.base_dir,
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::spec(src.error_near(
            "trial",
            None,
            errors.join("\n"),
        )));
    }
    doc["trial"] = Value::Object(trial);
    if let Some(m) = doc.as_object_mut() {
        m.remove("inputs");
    }
    Ok(Some(doc.to_string()))
}

/// Accepts a sweep file: checks it whole (and its first trial as a job file), stores the
/// sweep, and starts its driver.
pub async fn create(state: &AppState, mut req: JobCreateRequest) -> Result<JobView, ApiError> {
    let base_dir = PathBuf::from(&req.base_dir);
    if !base_dir.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "base_dir `{}` must be an absolute path",
            req.base_dir
        )));
    }
    if let Some(text) = with_component_trial(state, &req, &base_dir).await? {
        req.yaml = text;
        req.set.clear();
    }
    let src = Source::new(&req.file, &req.yaml);
    // `--set` and `--name` apply as to a command job; the driver keeps the text they made.
    let spec = berth_core::overrides::parse_with_sets(&src, &req.set, SweepSpec::parse)
        .map_err(ApiError::spec)?;
    let text = if req.set.is_empty() {
        req.yaml.clone()
    } else {
        berth_core::overrides::apply(&src, &req.set).map_err(ApiError::spec)?
    };
    let name = crate::services::jobs::free_name(state, spec.name.clone()).await?;
    let first = trial_file(&spec, &name, 0, &params_for(&spec, &name, 0, &[]));
    let mut trial = JobSpec::parse(&Source::new(&format!("{} (trial)", req.file), &first))
        .map_err(|e| {
            ApiError::spec(e.hint("the sweep's `trial` must be a command job's fields"))
        })?;
    // The sweep shows the trials' command as written, placeholders and all.
    trial.command = spec.trial["command"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let compute = trial
        .compute
        .clone()
        .unwrap_or_else(|| "local".into())
        .trim_start_matches("azureml:")
        .to_string();
    let mut record = driven::parent_record(state, &req, &name, trial, compute);
    record.display_name = spec.display_name.clone().unwrap_or_else(|| name.clone());
    record.experiment_name = spec
        .experiment_name
        .clone()
        .unwrap_or_else(|| crate::services::jobs::experiment_from(&base_dir));
    record.sweep = Some(SweepRun {
        file: req.file.clone(),
        yaml: text,
        ..Default::default()
    });
    driven::accept(state, record, start).await
}

/// Starts the driver of sweep `name` (boxed: the driver submits jobs, which may be sweeps).
pub fn start(state: AppState, name: String) {
    let driver: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(drive(state, name));
    tokio::spawn(driver);
}

/// Starts the drivers of the unfinished sweeps (at server start).
pub async fn recover(state: &AppState) {
    driven::recover(state, |j| j.sweep.is_some(), start).await;
}

async fn drive(state: AppState, name: String) {
    // The file never changes: it is read once, not at every round.
    let spec = match spec_of(&state, &name).await {
        Ok(Some(spec)) => spec,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(sweep = %name, error = %e, "the sweep's file cannot be read; it is not driven");
            return;
        }
    };
    driven::rounds(&state, &name, "sweep", || step(&state, &name, &spec)).await;
}

/// The stored sweep's file, checked.
async fn spec_of(state: &AppState, name: &str) -> Result<Option<SweepSpec>, ApiError> {
    let stored = state.store.get::<JobRecord>(Kind::Job, name).await?;
    let Some(run) = stored.and_then(|j| j.value.sweep) else {
        return Ok(None);
    };
    let spec = SweepSpec::parse(&Source::new(&run.file, &run.yaml)).map_err(ApiError::spec)?;
    Ok(Some(spec))
}

/// The best of a trial's reports.
fn best_of(goal: Goal, values: &[f64]) -> Option<f64> {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .reduce(|a, b| if goal.better(a, b) { a } else { b })
}

/// Where the trials stand: which run, every trial's reports, and the ended ones' results.
struct Observed {
    running: Vec<String>,
    reports: Vec<TrialReports>,
    history: Vec<Observation>,
}

/// Reads every trial's status and primary metric; moves `run.best` to the best seen.
async fn observe(
    state: &AppState,
    spec: &SweepSpec,
    run: &mut SweepRun,
) -> Result<Observed, ApiError> {
    let mut seen = Observed {
        running: Vec::new(),
        reports: Vec::new(),
        history: Vec::new(),
    };
    for t in &run.trials {
        let child = state.store.get::<JobRecord>(Kind::Job, &t.name).await?;
        let active = child.is_some_and(|c| !c.value.state.status().is_terminal());
        if active {
            seen.running.push(t.name.clone());
        }
        let values: Vec<f64> = state
            .store
            .metric_history(&t.name, &spec.primary_metric, 0, i64::MAX)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .map(|m| m.value)
            .collect();
        if let Some(best) = best_of(spec.goal, &values) {
            if !active {
                seen.history.push(Observation {
                    params: t.params.clone(),
                    objective: best,
                });
            }
            if run
                .best
                .as_ref()
                .is_none_or(|(_, b)| spec.goal.better(best, *b))
            {
                run.best = Some((t.name.clone(), best));
            }
        }
        seen.reports.push(TrialReports {
            trial: t.name.clone(),
            values,
            running: active,
        });
    }
    Ok(seen)
}

/// Stops the running trials the early termination policy names.
async fn terminate_early(
    state: &AppState,
    record: &JobRecord,
    spec: &SweepSpec,
    run: &mut SweepRun,
    reports: &[TrialReports],
) {
    let Some(policy) = &spec.early_termination else {
        return;
    };
    for t in policy.to_stop(spec.goal, reports) {
        if !run.stopped_early.contains(&t) {
            log(
                record,
                &format!("trial {t} stopped by the early termination policy"),
            )
            .await;
            let _ = state.jobs.cancel(&t).await;
            run.stopped_early.push(t);
        }
    }
}

/// Starts trials while slots are free and the limit allows; the error says which trial
/// could not be submitted and why.
async fn launch(
    state: &AppState,
    record: &JobRecord,
    spec: &SweepSpec,
    run: &mut SweepRun,
    seen: &mut Observed,
) -> Result<(), String> {
    let name = record.name.as_str();
    while seen.running.len() < spec.limits.max_concurrent_trials as usize
        && run.trials.len() < spec.limits.max_total_trials as usize
    {
        let i = run.trials.len();
        let params = params_for(spec, name, i, &seen.history);
        let req = JobCreateRequest {
            file: format!("{} (trial {i})", run.file),
            yaml: trial_file(spec, name, i, &params),
            base_dir: record.base_dir.clone(),
            set: Vec::new(),
            parent_job_name: Some(name.to_string()),
        };
        let child = crate::services::jobs::create(state, req)
            .await
            .map_err(|e| format!("trial {i} could not be submitted: {e}"))?;
        let shown = Value::Object(params.clone().into_iter().collect());
        log(
            record,
            &format!("trial {} started with {shown}", child.name),
        )
        .await;
        seen.running.push(child.name.clone());
        run.trials.push(SweepTrial {
            name: child.name,
            params,
        });
    }
    Ok(())
}

/// One round of the driver; true once the sweep has ended.
async fn step(state: &AppState, name: &str, spec: &SweepSpec) -> Result<bool, ApiError> {
    let Some(stored) = state.store.get::<JobRecord>(Kind::Job, name).await? else {
        return Ok(true);
    };
    let mut record = stored.value.clone();
    let Some(mut run) = record.sweep.clone() else {
        return Ok(true);
    };
    let mut seen = observe(state, spec, &mut run).await?;
    let started = record.state.started_at().unwrap_or(record.created_at);
    let timed_out = spec
        .limits
        .timeout
        .is_some_and(|t| (OffsetDateTime::now_utc() - started).whole_seconds() >= t as i64);
    if record.state.status().is_terminal() || timed_out {
        // Canceled, or out of time: so are its trials.
        for t in &seen.running {
            let _ = state.jobs.cancel(t).await;
        }
        if record.state.status().is_terminal() {
            return Ok(true);
        }
        seen.running.clear();
    }
    terminate_early(state, &record, spec, &mut run, &seen.reports).await;
    if !timed_out && let Err(message) = launch(state, &record, spec, &mut run, &mut seen).await {
        log(&record, &message).await;
        return finish(state, &stored, record, run, Err(message)).await;
    }
    if seen.running.is_empty()
        && (timed_out || run.trials.len() >= spec.limits.max_total_trials as usize)
    {
        let outcome = match &run.best {
            Some((t, v)) => Ok(format!("best trial {t}: {} = {v}", spec.primary_metric)),
            None => Err(format!(
                "no trial logged the primary metric `{}`; the trials must log it (mlflow.log_metric(\"{}\", value))",
                spec.primary_metric, spec.primary_metric
            )),
        };
        return finish(state, &stored, record, run, outcome).await;
    }
    record.sweep = Some(run);
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
    Ok(false)
}

/// Ends the sweep: Completed with its best trial, or Failed with why.
async fn finish(
    state: &AppState,
    stored: &Stored<JobRecord>,
    mut record: JobRecord,
    run: SweepRun,
    outcome: Result<String, String>,
) -> Result<bool, ApiError> {
    let started_at = record.state.started_at().unwrap_or(record.created_at);
    let ended_at = OffsetDateTime::now_utc();
    let (state_now, line) = match outcome {
        Ok(line) => (
            JobState::Completed {
                started_at,
                ended_at,
            },
            line,
        ),
        Err(message) => (
            JobState::Failed {
                started_at: Some(started_at),
                ended_at,
                exit_code: None,
                kind: FailureKind::SweepFailed,
                message: message.clone(),
            },
            message,
        ),
    };
    log(&record, &line).await;
    if let Some((best, _)) = &run.best
        && let Ok(Some(trial)) = state.store.get::<JobRecord>(Kind::Job, best).await
    {
        // A sweep's outputs are its best trial's (what a pipeline step after it reads).
        record.outputs = trial.value.outputs;
    }
    if let Some((best, value)) = &run.best {
        let _ = state
            .store
            .log_batch(
                &record.name,
                &[berth_store::tracking::Metric {
                    key: "best_primary_metric".into(),
                    value: *value,
                    timestamp: crate::mlflow::now_ms(),
                    step: 0,
                }],
                &[],
                &[("best_child_run_id".into(), best.clone())],
            )
            .await;
    }
    let status = state_now.status();
    record.state = state_now;
    record.sweep = Some(run);
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

/// What `job show` says of a sweep: its trials, and the best one with its parameters.
pub fn summary(run: &SweepRun) -> Value {
    let best = run.best.as_ref().map(|(t, v)| {
        let params = run
            .trials
            .iter()
            .find(|x| &x.name == t)
            .map(|x| x.params.clone())
            .unwrap_or_default();
        json!({"trial": t, "value": v, "params": params})
    });
    json!({
        "trials": run.trials.iter().map(|t| json!({"name": t.name, "params": t.params})).collect::<Vec<_>>(),
        "stopped_early": run.stopped_early,
        "best": best,
    })
}
