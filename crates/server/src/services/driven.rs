//! What sweeps and pipelines share as jobs the server drives instead of running a command:
//! the round loop (woken by any job change, or every 2 s), the drivers restarted at server
//! start, and the `[berth]` lines written to the parent's log.

use std::future::Future;
use std::time::Duration;

use berth_core::job::{JobRecord, JobStatus};
use berth_scheduler::workdir::JobDir;
use berth_store::Kind;

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
