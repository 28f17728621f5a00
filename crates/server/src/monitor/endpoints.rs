//! Every 10 s, each deployment's traffic through this server's router (requests/s, by status
//! class, latency p50/p99) as metrics of run `endpoint.<endpoint>.<deployment>`.

use std::time::{Duration, Instant};

use berth_store::tracking::Metric;

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
            let metrics: Vec<Metric> = points
                .into_iter()
                .map(|(k, v)| Metric {
                    key: k.into(),
                    value: v,
                    timestamp: stamp,
                    step: self.step,
                })
                .collect();
            let _ = state.store.log_batch(&run, &metrics, &[], &[]).await;
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
