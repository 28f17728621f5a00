//! Every 10 s, each deployment's traffic through this server's router (requests/s, by status
//! class, latency p50/p99) as metrics of run `endpoint.<endpoint>.<deployment>`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::computes::{KEEP, ensure_run};
use super::traffic::{self, Snapshot};
use crate::AppState;

/// The experiment of the endpoint runs.
pub const EXPERIMENT: &str = "berth.endpoints";
const EVERY: Duration = Duration::from_secs(10);

/// The run that holds a deployment's traffic.
pub fn run_id(endpoint: &str, deployment: &str) -> String {
    format!("endpoint.{endpoint}.{deployment}")
}

/// The last snapshot and when it was taken.
#[derive(Default)]
pub struct EndpointSampler {
    last: Option<(Instant, Snapshot)>,
    pruned: Option<Instant>,
    step: i64,
    /// Each deployment's replicas' CPU time at the last sample.
    cpu: HashMap<String, (u64, Instant)>,
}

impl EndpointSampler {
    /// Records the window since the last snapshot, when due.
    pub async fn tick(&mut self, state: &AppState) {
        if self
            .last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < EVERY)
        {
            return;
        }
        let now = (
            Instant::now(),
            traffic::parse(&state.router.metrics.encode()),
        );
        let Some((at, before)) = self.last.replace(now.clone()) else {
            return;
        };
        let secs = now.0.duration_since(at).as_secs_f64();
        let stamp = crate::mlflow::now_ms();
        let prune = self
            .pruned
            .is_none_or(|p| p.elapsed() > Duration::from_secs(3600));
        self.record_replicas(state, stamp).await;
        for ((endpoint, deployment), w) in traffic::windows(&before, &now.1, secs) {
            if deployment.is_empty() || endpoint == berth_router::UNKNOWN_ENDPOINT {
                continue;
            }
            let run = run_id(&endpoint, &deployment);
            if ensure_run(state, EXPERIMENT, &run).await.is_err() {
                continue;
            }
            let mut points = vec![
                ("requests_per_second", w.requests_per_second),
                ("status_2xx_per_second", w.by_class[0]),
                ("status_4xx_per_second", w.by_class[1]),
                ("status_5xx_per_second", w.by_class[2]),
            ];
            if let Some((p50, p99)) = w.latency_ms {
                points.push(("latency_p50_ms", p50));
                points.push(("latency_p99_ms", p99));
            }
            super::log_sample(state, &run, points, stamp, self.step).await;
            if prune {
                let _ = state
                    .store
                    .prune_points(&run, stamp - KEEP.as_millis() as i64)
                    .await;
            }
        }
        if prune {
            self.pruned = Some(Instant::now());
        }
        self.step += 1;
    }
}

impl EndpointSampler {
    /// Each local deployment's replicas together: `system/cpu_cores_used`,
    /// `system/memory_usage_megabytes` and `replicas`, in the deployment's run.
    async fn record_replicas(&mut self, state: &AppState, stamp: i64) {
        let Ok(deployments) = state
            .store
            .list::<berth_core::serving::DeploymentRecord>(berth_store::Kind::Deployment)
            .await
        else {
            return;
        };
        let replicas = state.serving.backends().local.replicas();
        for d in &deployments {
            let spec = &d.value.spec;
            let key = berth_core::serving::deployment_key(&spec.endpoint_name, &spec.name);
            let used = replicas.usage(&key);
            if used.is_empty() {
                continue;
            }
            let cpu: u64 = used.iter().filter_map(|u| u.cpu_usec).sum();
            let memory: u64 = used.iter().filter_map(|u| u.memory_bytes).sum();
            let mut points = vec![
                ("replicas", used.len() as f64),
                (
                    "system/memory_usage_megabytes",
                    (memory as f64 / 1_048_576.0 * 100.0).round() / 100.0,
                ),
            ];
            let now = Instant::now();
            // A replica that started or stopped since moves the total: no rate this time.
            if let Some((was, at)) = self.cpu.insert(key.clone(), (cpu, now))
                && cpu >= was
            {
                let cores = (cpu - was) as f64 / now.duration_since(at).as_micros().max(1) as f64;
                points.push(("system/cpu_cores_used", (cores * 100.0).round() / 100.0));
            }
            let run = run_id(&spec.endpoint_name, &spec.name);
            if ensure_run(state, EXPERIMENT, &run).await.is_err() {
                continue;
            }
            super::log_sample(state, &run, points, stamp, self.step).await;
        }
    }
}
