//! Each job is one MLflow run: made when the job is accepted (its id is the job's name, in
//! the job's experiment), reached by the job's command with a token of its own.

use berth_core::api::{JobView, MetricPoint};
use berth_core::job::{JobRecord, JobTracking};
use berth_store::tracking::NewRun;

use super::error::MlflowError;
use crate::AppState;
use crate::error::ApiError;

/// The token a job's command logs with: `<job>.<hex>`, derived from the server's secret, the
/// job's name and when it was made (a job made again under the same name gets another).
pub fn job_token(server_secret: &str, job: &JobRecord) -> String {
    let mac = crate::auth::derive(
        server_secret,
        &format!(
            "mlflow|{}|{}",
            job.name,
            job.created_at.unix_timestamp_nanos()
        ),
    );
    format!("{}.{mac}", job.name)
}

/// Makes the job's run (and its experiment when it is new), and returns what the job's
/// command needs to reach it.
pub async fn open_run(state: &AppState, job: &JobRecord) -> Result<JobTracking, MlflowError> {
    let start = (job.created_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let experiment_id = state
        .store
        .ensure_experiment(&job.experiment_name, start)
        .await?;
    let e = state
        .store
        .experiment(experiment_id)
        .await?
        .ok_or_else(|| MlflowError::Internal("the job's experiment vanished".into()))?;
    let mut tags = vec![
        ("mlflow.runName".to_string(), job.display_name.clone()),
        ("mlflow.user".to_string(), "berth".to_string()),
        ("mlflow.source.type".to_string(), "JOB".to_string()),
        ("berth.compute".to_string(), job.compute.clone()),
    ];
    tags.extend(job.spec.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(parent) = &job.parent_job_name {
        // A pipeline's step or a sweep's trial is a child run, as MLflow nests them.
        tags.push(("mlflow.parentRunId".to_string(), parent.clone()));
    }
    state
        .store
        .create_run(&NewRun {
            run_id: job.name.clone(),
            experiment_id,
            run_name: job.display_name.clone(),
            user_id: "berth".into(),
            job_name: Some(job.name.clone()),
            status: "SCHEDULED".into(),
            start_time: start,
            artifact_uri: format!("{}/{}/artifacts", e.artifact_location, job.name),
            tags,
        })
        .await?;
    Ok(JobTracking {
        local_uri: state.api_url.to_string(),
        token: job_token(&state.token_secret, job),
        experiment_id: experiment_id.to_string(),
    })
}

/// Adds what the job's run logged to its view: the latest value of each metric, the params,
/// and the tags the command set (MLflow's own `mlflow.*` ones left out).
pub async fn add_run(state: &AppState, view: &mut JobView) -> Result<(), ApiError> {
    let Some(run) = state.store.run(&view.name).await.map_err(tracking)? else {
        return Ok(());
    };
    view.metrics = run
        .metrics
        .iter()
        .map(|m| (m.key.clone(), super::wire::number(m.value)))
        .collect();
    view.params = run.params;
    for (k, v) in run.tags {
        if !k.starts_with("mlflow.") && !k.starts_with("berth.") {
            view.tags.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Every point of metric `key` of job `job`'s run, in the order logged.
pub async fn history(state: &AppState, job: &str, key: &str) -> Result<Vec<MetricPoint>, ApiError> {
    let points = state
        .store
        .metric_history(job, key, 0, i64::MAX)
        .await
        .map_err(tracking)?;
    Ok(points
        .into_iter()
        .map(|m| MetricPoint {
            key: m.key,
            step: m.step,
            timestamp: m.timestamp,
            value: super::wire::number(m.value),
        })
        .collect())
}

/// The metric keys job `job`'s run logged.
pub async fn metric_keys(state: &AppState, job: &str) -> Result<Vec<String>, ApiError> {
    let run = state.store.run(job).await.map_err(tracking)?;
    Ok(run
        .map(|r| r.metrics.into_iter().map(|m| m.key).collect())
        .unwrap_or_default())
}

fn tracking(e: berth_store::tracking::TrackingError) -> ApiError {
    ApiError::Internal(e.to_string())
}
