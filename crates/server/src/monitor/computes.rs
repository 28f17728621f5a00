//! The local compute's capacity over time: every 30 s, its total and used CPU, memory and
//! GPUs and its running and queued jobs, as metrics of run `compute.local` (experiment
//! `berth.computes`), with seven days kept.

use std::time::{Duration, Instant};

use berth_scheduler::manager::LOCAL_POOL;
use berth_store::Kind;
use berth_store::tracking::NewRun;

use crate::AppState;

/// The experiment of the compute runs.
pub const EXPERIMENT: &str = "berth.computes";
/// How often a compute is sampled.
const EVERY: Duration = Duration::from_secs(30);
/// How much history is kept.
pub(super) const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The run that holds compute `name`'s history.
pub fn run_id(name: &str) -> String {
    format!("compute.{name}")
}

/// When the compute was last sampled and pruned.
#[derive(Default)]
pub struct ComputeSampler {
    last: Option<Instant>,
    pruned: Option<Instant>,
    step: i64,
}

impl ComputeSampler {
    /// Samples the local compute when due.
    pub async fn tick(&mut self, state: &AppState) {
        if self.last.is_some_and(|l| l.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let run = run_id(LOCAL_POOL);
        if ensure_run(state, EXPERIMENT, &run).await.is_err() {
            return;
        }
        let Some((total, free)) = state.jobs.capacity(LOCAL_POOL) else {
            return;
        };
        let count = |statuses: &'static [&'static str]| async move {
            let jobs = state
                .store
                .list_with_status::<serde_json::Value>(Kind::Job, statuses)
                .await;
            jobs.map_or(0, |j| j.len()) as f64
        };
        let running = count(&["Running", "Preparing", "Finalizing"]).await;
        let queued = count(&["Queued"]).await;
        let cores = |q: berth_core::quantity::Quantity| q.millis() as f64 / 1000.0;
        let mb = |q: berth_core::quantity::Quantity| q.millis() as f64 / 1000.0 / 1_048_576.0;
        let stamp = crate::mlflow::now_ms();
        let points = [
            ("capacity/cpu_cores", cores(total.cpu)),
            (
                "capacity/cpu_cores_used",
                cores(total.cpu.saturating_sub(free.cpu)),
            ),
            ("capacity/memory_megabytes", mb(total.memory)),
            (
                "capacity/memory_used_megabytes",
                mb(total.memory.saturating_sub(free.memory)),
            ),
            ("capacity/gpus", f64::from(total.gpus)),
            (
                "capacity/gpus_used",
                f64::from(total.gpus.saturating_sub(free.gpus)),
            ),
            ("jobs/running", running),
            ("jobs/queued", queued),
        ];
        super::log_sample(state, &run, points, stamp, self.step).await;
        self.step += 1;
        if self
            .pruned
            .is_none_or(|p| p.elapsed() > Duration::from_secs(3600))
        {
            self.pruned = Some(Instant::now());
            let before = stamp - KEEP.as_millis() as i64;
            let _ = state.store.prune_points(&run, before).await;
        }
    }
}

/// Makes one of Berth's own runs (and its experiment) the first time.
pub(super) async fn ensure_run(
    state: &AppState,
    experiment: &str,
    run: &str,
) -> Result<(), berth_store::tracking::TrackingError> {
    if state.store.run_info(run).await?.is_some() {
        return Ok(());
    }
    let now = crate::mlflow::now_ms();
    let exp = state.store.ensure_experiment(experiment, now).await?;
    let made = state
        .store
        .create_run(&NewRun {
            run_id: run.to_string(),
            experiment_id: exp,
            run_name: run.to_string(),
            user_id: "berth".into(),
            job_name: None,
            status: "RUNNING".into(),
            start_time: now,
            artifact_uri: format!(
                "{}/{run}/artifacts",
                berth_store::tracking::experiment_artifacts(exp)
            ),
            tags: vec![("mlflow.runName".into(), run.to_string())],
        })
        .await;
    match made {
        Err(berth_store::tracking::TrackingError::AlreadyExists(_)) => Ok(()),
        other => other,
    }
}
