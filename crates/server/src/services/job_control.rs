//! Changing a stored job on a person's word: cancel (a sweep or pipeline is marked here and
//! its driver cancels its children), archive and restore. Each re-reads and retries when
//! another writer (a driver, the scheduler) wrote the record in between.

use berth_core::api::JobView;
use berth_core::job::{JobState, JobStatus};
use berth_store::Kind;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::jobs::{get, view};

/// Cancels a job; a sweep or pipeline is marked canceled here and its driver cancels its
/// children. Its driver writes the same record: a write it made in between is read again.
pub async fn cancel(state: &AppState, name: &str) -> Result<(), ApiError> {
    loop {
        let job = get(state, name).await?;
        if !job.value.is_driven() {
            state.jobs.cancel(name).await?;
            return Ok(());
        }
        let status = job.value.state.status();
        if status.is_terminal() {
            return Err(berth_scheduler::manager::ManagerError::AlreadyFinished {
                name: name.to_string(),
                status,
            }
            .into());
        }
        let mut record = job.value.clone();
        record.state = JobState::Canceled {
            started_at: record.state.started_at(),
            ended_at: OffsetDateTime::now_utc(),
        };
        let written = state
            .store
            .update(
                Kind::Job,
                name,
                job.resource_version,
                Some(JobStatus::Canceled.as_str()),
                &record,
            )
            .await;
        match written {
            Ok(_) => {
                state.jobs.notify();
                return Ok(());
            }
            Err(berth_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Archives (or restores) a job. A job that has not ended cannot be archived.
pub async fn set_archived(
    state: &AppState,
    name: &str,
    archived: bool,
) -> Result<JobView, ApiError> {
    loop {
        let job = get(state, name).await?;
        let status = job.value.state.status();
        if archived && !status.is_terminal() {
            return Err(ApiError::Conflict {
                message: format!(
                    "job `{name}` is {}; only a job that has ended can be archived",
                    status.as_str()
                ),
                hint: Some(format!(
                    "wait for it to end, or `berth job cancel --name {name}` first"
                )),
            });
        }
        if job.value.archived == archived {
            return Ok(view(state, &job));
        }
        let mut record = job.value.clone();
        record.archived = archived;
        match state
            .store
            .update(
                Kind::Job,
                name,
                job.resource_version,
                Some(status.as_str()),
                &record,
            )
            .await
        {
            Ok(_) => return Ok(view(state, &get(state, name).await?)),
            Err(berth_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
