//! Resource use over time, recorded as MLflow metrics so the studio and `job metrics` read
//! them like any other: each running local job's CPU, memory and GPUs (`system/*` of its
//! run), and the local compute's used and free capacity (run `compute.local` of experiment
//! `berth.computes`), and each deployment's traffic (run `endpoint.<e>.<d>` of experiment
//! `berth.endpoints`); seven days kept of both.

pub mod computes;
pub mod endpoints;
mod jobs;
mod traffic;
pub mod usage;

use std::time::Duration;

use crate::AppState;

pub use computes::run_id as compute_run;
pub use endpoints::run_id as endpoint_run;

/// Logs one sample (`(key, value)` pairs, all at `stamp` and `step`) to `run`.
async fn log_sample<K: Into<String>>(
    state: &AppState,
    run: &str,
    points: impl IntoIterator<Item = (K, f64)>,
    stamp: i64,
    step: i64,
) {
    let metrics: Vec<berth_store::tracking::Metric> = points
        .into_iter()
        .map(|(key, value)| berth_store::tracking::Metric {
            key: key.into(),
            value,
            timestamp: stamp,
            step,
        })
        .collect();
    if !metrics.is_empty() {
        let _ = state.store.log_batch(run, &metrics, &[], &[]).await;
    }
}

/// How often the monitor wakes.
const TICK: Duration = Duration::from_secs(5);

/// Starts the monitor; it runs as long as the server.
pub fn start(state: AppState) {
    tokio::spawn(async move {
        let mut jobs = jobs::JobSampler::default();
        let mut computes = computes::ComputeSampler::default();
        let mut endpoints = endpoints::EndpointSampler::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            jobs.tick(&state).await;
            computes.tick(&state).await;
            endpoints.tick(&state).await;
        }
    });
}

/// Each running local job's latest sample, as Prometheus gauges on `/metrics`.
#[derive(Debug, Default)]
pub struct LatestUsage(std::sync::Mutex<std::collections::BTreeMap<String, Vec<(String, f64)>>>);

impl LatestUsage {
    /// Keeps `points` as job `job`'s latest.
    pub fn set(&self, job: &str, points: &[(String, f64)]) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(job.to_string(), points.to_vec());
        }
    }

    /// Forgets the jobs `running` does not hold.
    pub fn retain(&self, running: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|job, _| running(job));
        }
    }

    /// `berth_job_<metric>{job="..."}` gauges: `system/cpu_cores_used` becomes
    /// `berth_job_cpu_cores_used`, a GPU's `system/gpu_0_*` gets a `gpu` label.
    pub fn exposition(&self) -> String {
        let Ok(m) = self.0.lock() else {
            return String::new();
        };
        let mut by_metric: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (job, points) in m.iter() {
            for (key, value) in points {
                let name = key.trim_start_matches("system/");
                let (metric, gpu) = match name.strip_prefix("gpu_").and_then(|r| r.split_once('_'))
                {
                    Some((i, rest)) => (format!("berth_job_gpu_{rest}"), Some(i)),
                    None => (format!("berth_job_{name}"), None),
                };
                let labels = match gpu {
                    Some(i) => format!("job=\"{job}\",gpu=\"{i}\""),
                    None => format!("job=\"{job}\""),
                };
                by_metric
                    .entry(metric)
                    .or_default()
                    .push(format!("{{{labels}}} {value}"));
            }
        }
        let mut out = String::new();
        for (metric, samples) in by_metric {
            out.push_str(&format!(
                "# HELP {metric} A running job's latest sample.\n# TYPE {metric} gauge\n"
            ));
            for s in samples {
                out.push_str(&format!("{metric}{s}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::LatestUsage;

    #[test]
    fn the_latest_samples_are_gauges_with_job_and_gpu_labels() {
        let l = LatestUsage::default();
        l.set(
            "j1",
            &[
                ("system/cpu_cores_used".into(), 1.5),
                ("system/gpu_0_utilization_percentage".into(), 80.0),
            ],
        );
        l.set("gone", &[("system/cpu_cores_used".into(), 1.0)]);
        l.retain(|j| j == "j1");
        let text = l.exposition();
        assert!(
            text.contains(
                "# TYPE berth_job_cpu_cores_used gauge\nberth_job_cpu_cores_used{job=\"j1\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("berth_job_gpu_utilization_percentage{job=\"j1\",gpu=\"0\"} 80\n"),
            "{text}"
        );
        assert!(!text.contains("gone"));
    }
}
