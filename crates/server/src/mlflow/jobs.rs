//! Each job is one MLflow run: made when the job is accepted (its id is the job's name, in
//! the job's experiment), reached by the job's command with a token of its own.

use berth_core::job::{JobRecord, JobTracking};
use berth_store::tracking::{NewRun, Run};

use super::error::MlflowError;
use crate::AppState;

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

/// The job's run with its latest metrics, params and tags, if it has one.
pub async fn run_of(state: &AppState, job: &str) -> Result<Option<Run>, MlflowError> {
    Ok(state.store.run(job).await?)
}
