//! Changing a stored job on a person's word: cancel (a sweep or pipeline is marked here and
//! its driver cancels its children), archive and restore. Each re-reads and retries when
//! another writer (a driver, the scheduler) wrote the record in between.

use berth_core::api::JobView;
use berth_core::job::JobState;
use berth_store::Kind;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::jobs::{get, view};

/// Changes a stored job with `change`, which sees the latest record and says whether it
/// changed it (an error stops). The job's driver or the scheduler may write the same record:
/// a write made in between is read again and `change` applied again. Returns whether
/// anything was written.
pub async fn update_job(
    state: &AppState,
    name: &str,
    change: impl Fn(&mut berth_core::job::JobRecord) -> Result<bool, ApiError>,
) -> Result<bool, ApiError> {
    loop {
        let job = get(state, name).await?;
        let mut record = job.value.clone();
        if !change(&mut record)? {
            return Ok(false);
        }
        let status = record.state.status();
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
            Ok(_) => return Ok(true),
            Err(berth_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Cancels a job; a sweep or pipeline is marked canceled here and its driver cancels its
/// children.
pub async fn cancel(state: &AppState, name: &str) -> Result<(), ApiError> {
    if !get(state, name).await?.value.is_driven() {
        state.jobs.cancel(name).await?;
        return Ok(());
    }
    update_job(state, name, |record| {
        let status = record.state.status();
        if status.is_terminal() {
            return Err(berth_scheduler::manager::ManagerError::AlreadyFinished {
                name: name.to_string(),
                status,
            }
            .into());
        }
        record.state = JobState::Canceled {
            started_at: record.state.started_at(),
            ended_at: OffsetDateTime::now_utc(),
        };
        Ok(true)
    })
    .await?;
    state.jobs.notify();
    Ok(())
}

/// Archives (or restores) a job. A job that has not ended cannot be archived.
pub async fn set_archived(
    state: &AppState,
    name: &str,
    archived: bool,
) -> Result<JobView, ApiError> {
    update_job(state, name, |record| {
        let status = record.state.status();
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
        let changed = record.archived != archived;
        record.archived = archived;
        Ok(changed)
    })
    .await?;
    Ok(view(state, &get(state, name).await?))
}
