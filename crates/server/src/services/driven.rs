//! What sweeps and pipelines share as jobs the server drives instead of running a command:
//! the parent's record and its acceptance, the round loop (woken by any job change, or every 2 s), the drivers restarted at server
//! start, and the `[berth]` lines written to the parent's log.

use std::future::Future;
use std::time::Duration;

use berth_core::api::{JobCreateRequest, JobView};
use berth_core::job::{JobRecord, JobState, JobStatus};
use berth_core::spec::instance_type::InstanceType;
use berth_core::spec::job::JobSpec;
use berth_scheduler::workdir::JobDir;
use berth_store::Kind;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

/// Runs `round` until it says the job has ended (true); a failed round is logged and tried
/// again at the next wake-up.
pub async fn rounds<F, Fut>(state: &AppState, name: &str, kind: &str, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, ApiError>>,
{
    let mut changes = state.jobs.subscribe();
    loop {
        match round().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job = %name, kind, error = %e, "a driver round failed; trying again")
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Starts `start` for every unfinished job that `mine` says is this driver's (at server
/// start).
pub async fn recover(state: &AppState, mine: fn(&JobRecord) -> bool, start: fn(AppState, String)) {
    let active = state
        .store
        .list_with_status::<JobRecord>(Kind::Job, &JobStatus::active_names())
        .await
        .unwrap_or_default();
    for job in active.into_iter().filter(|j| mine(&j.value)) {
        start(state.clone(), job.value.name);
    }
}

/// Appends a `[berth]` line to the driven job's log.
pub async fn log(record: &JobRecord, line: &str) {
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

/// A driven job's record as accepted: Running from now, running no process; the caller sets
/// its `sweep` or `pipeline`.
pub fn parent_record(
    state: &AppState,
    req: &JobCreateRequest,
    name: &str,
    spec: JobSpec,
    compute: String,
) -> JobRecord {
    let now = OffsetDateTime::now_utc();
    let base_dir = std::path::Path::new(&req.base_dir);
    JobRecord {
        name: name.to_string(),
        display_name: spec
            .display_name
            .clone()
            .unwrap_or_else(|| name.to_string()),
        experiment_name: spec
            .experiment_name
            .clone()
            .unwrap_or_else(|| crate::services::jobs::experiment_from(base_dir)),
        compute,
        instance_type: InstanceType::default_type(),
        base_dir: req.base_dir.clone(),
        workdir: state
            .home
            .join("jobs")
            .join(name)
            .to_string_lossy()
            .into_owned(),
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
        pipeline: None,
        archived: false,
        pruned: false,
        cancel_requested: false,
        spec,
    }
}

/// Stores a driven job (its MLflow run and its log folder first; nothing kept if the store
/// refuses it), starts its driver, and returns its view.
pub async fn accept(
    state: &AppState,
    mut record: JobRecord,
    start: fn(AppState, String),
) -> Result<JobView, ApiError> {
    let name = record.name.clone();
    let workdir = std::path::PathBuf::from(&record.workdir);
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
