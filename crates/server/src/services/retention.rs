//! Retention: archived jobs that ended more than `retain_days` ago lose their code snapshot,
//! downloaded inputs and default outputs; their records, their log and what their command
//! wrote to `./logs` stay. Outputs written to a datastore are the user's and are never
//! touched. On demand (`job prune`, with a dry run that says what would be freed) and hourly
//! when the server has `--retain-days` or a retention for some experiments
//! (`--retain-days-for EXPERIMENT=DAYS`), an experiment's own setting winning over the global
//! one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::api::{PruneReport, PruneRequest};
use berth_core::job::{JobRecord, JobStatus};
use berth_scheduler::workdir::JobDir;
use berth_store::Kind;
use berth_store::listing::{Archived, ListQuery};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

/// What retention removes of a job's folder: everything of the code snapshot but its `logs`,
/// the downloaded inputs and the default outputs.
fn removable(workdir: &Path) -> Vec<PathBuf> {
    let dir = JobDir::new(workdir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.code())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "logs")
        .map(|e| e.path())
        .collect();
    out.extend(
        [dir.inputs(), dir.outputs()]
            .into_iter()
            .filter(|p| p.exists()),
    );
    out
}

/// Bytes under a path (links not followed).
fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| size(&e.path()))
        .sum()
}

fn remove(path: &Path) {
    let _ = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

/// Prunes (or, with `dry_run`, measures) the archived jobs past retention.
pub async fn prune(state: &AppState, req: &PruneRequest) -> Result<PruneReport, ApiError> {
    prune_except(state, req, &[]).await
}

/// The server's retention: days for the jobs of each named experiment, and for the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Days for the jobs of experiments not named below; `None`: kept.
    pub default: Option<u32>,
    /// Days for the jobs of each of these experiments.
    pub by_experiment: BTreeMap<String, u32>,
}

impl Policy {
    /// Whether the policy removes anything.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.by_experiment.is_empty()
    }
}

/// One pass of `policy`: each named experiment with its own days, then every other
/// experiment with the default.
pub async fn apply(state: &AppState, policy: &Policy) -> Result<PruneReport, ApiError> {
    let mut total = PruneReport {
        jobs: Vec::new(),
        bytes: 0,
        dry_run: false,
    };
    let mut add = |r: PruneReport| {
        total.jobs.extend(r.jobs);
        total.bytes += r.bytes;
    };
    for (experiment, days) in &policy.by_experiment {
        let req = PruneRequest {
            retain_days: *days,
            experiment_name: Some(experiment.clone()),
            dry_run: false,
        };
        add(prune(state, &req).await?);
    }
    if let Some(days) = policy.default {
        let req = PruneRequest {
            retain_days: days,
            experiment_name: None,
            dry_run: false,
        };
        let own: Vec<String> = policy.by_experiment.keys().cloned().collect();
        add(prune_except(state, &req, &own).await?);
    }
    Ok(total)
}

/// [`prune`], leaving alone the jobs of the experiments in `skip` (they have their own days).
async fn prune_except(
    state: &AppState,
    req: &PruneRequest,
    skip: &[String],
) -> Result<PruneReport, ApiError> {
    if req.retain_days == 0 {
        return Err(ApiError::BadRequest(
            "retain_days is 0: retention is counted in whole days, at least 1".into(),
        ));
    }
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(req.retain_days));
    let ended = [
        JobStatus::Completed.as_str(),
        JobStatus::Failed.as_str(),
        JobStatus::Canceled.as_str(),
    ];
    let fields: Vec<(&str, &str)> = req
        .experiment_name
        .as_deref()
        .map(|e| ("experiment_name", e))
        .into_iter()
        .collect();
    let mut report = PruneReport {
        jobs: Vec::new(),
        bytes: 0,
        dry_run: req.dry_run,
    };
    let mut before = None;
    loop {
        let page = state
            .store
            .list_page::<JobRecord>(
                Kind::Job,
                &ListQuery {
                    statuses: &ended,
                    fields: &fields,
                    archived: Archived::Only,
                    before,
                    limit: 500,
                    ..Default::default()
                },
            )
            .await?;
        for job in &page.items {
            let j = &job.value;
            if j.pruned
                || j.state.ended_at().is_none_or(|t| t > cutoff)
                || skip.contains(&j.experiment_name)
            {
                continue;
            }
            let workdir = PathBuf::from(&j.workdir);
            let dry = req.dry_run;
            let bytes = tokio::task::spawn_blocking(move || {
                let paths = removable(&workdir);
                let bytes = paths.iter().map(|p| size(p)).sum::<u64>();
                if !dry {
                    paths.iter().for_each(|p| remove(p));
                }
                bytes
            })
            .await
            .unwrap_or(0);
            if !dry {
                crate::services::job_control::update_job(state, &j.name, |r| {
                    r.pruned = true;
                    Ok(true)
                })
                .await?;
            }
            report.bytes += bytes;
            report.jobs.push(j.name.clone());
        }
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    Ok(report)
}

/// Applies the server's retention hourly, the first time a minute after start.
pub fn start(state: AppState, policy: Policy) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        loop {
            match apply(&state, &policy).await {
                Ok(r) if !r.jobs.is_empty() => tracing::info!(
                    jobs = r.jobs.len(),
                    bytes = r.bytes,
                    "retention removed the code and outputs of archived jobs"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention could not run"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}
