//! Samples each running local job's cgroup (and its GPUs) into its run's `system/*` metrics.

use std::collections::HashMap;
use std::time::Instant;

use berth_core::job::{JobRecord, JobState};
use berth_scheduler::workdir::JobDir;
use berth_store::Kind;

use super::usage::{self, Previous};
use crate::AppState;

/// Where a job's sampling stands.
struct Tracked {
    cpu_usec: Option<u64>,
    at: Instant,
    taken: u64,
}

/// The jobs being sampled.
#[derive(Default)]
pub struct JobSampler {
    jobs: HashMap<String, Tracked>,
}

impl JobSampler {
    /// Samples the running jobs that are due; forgets the ones that ended.
    pub async fn tick(&mut self, state: &AppState) {
        let Ok(running) = state
            .store
            .list_with_status::<JobRecord>(Kind::Job, &["Running"])
            .await
        else {
            return;
        };
        self.jobs
            .retain(|name, _| running.iter().any(|j| &j.value.name == name));
        state
            .job_usage
            .retain(|name| running.iter().any(|j| j.value.name == name));
        let machine_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let mut gpus_seen = None;
        for job in running.iter().map(|j| &j.value) {
            let now = Instant::now();
            if let Some(t) = self.jobs.get(&job.name)
                && now.duration_since(t.at) < usage::sample_interval(t.taken)
            {
                continue;
            }
            let dir = JobDir::new(&job.workdir);
            let use_now = usage_of(state, &dir, &job.name);
            let gpus = match &job.state {
                JobState::Running { gpus, .. } => gpus.as_slice(),
                _ => &[],
            };
            if use_now.cpu_usec.is_none() && use_now.memory_bytes.is_none() && gpus.is_empty() {
                // Not a local job (a cluster's): nothing to read here.
                continue;
            }
            let previous = self.jobs.get(&job.name).and_then(|t| {
                Some(Previous {
                    cpu_usec: t.cpu_usec?,
                    elapsed_usec: now.duration_since(t.at).as_micros() as u64,
                })
            });
            let mut points: Vec<(String, f64)> =
                usage::system_metrics(use_now, previous, &job.instance_type.limits, machine_cpus)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
            if !gpus.is_empty() {
                if gpus_seen.is_none() {
                    gpus_seen = Some(nvidia_smi().await);
                }
                points.extend(usage::gpu_metrics(
                    gpus,
                    gpus_seen.as_deref().unwrap_or_default(),
                ));
            }
            state.job_usage.set(&job.name, &points);
            let taken = self.jobs.get(&job.name).map_or(0, |t| t.taken);
            let stamp = crate::mlflow::now_ms();
            super::log_sample(state, &job.name, points, stamp, taken as i64).await;
            self.jobs.insert(
                job.name.clone(),
                Tracked {
                    cpu_usec: use_now.cpu_usec,
                    at: now,
                    taken: taken + 1,
                },
            );
        }
    }
}

/// A local job's use: its cgroup's, else (no cgroups here) its process group's.
fn usage_of(state: &AppState, dir: &JobDir, name: &str) -> berth_scheduler::cgroup::Usage {
    let from_cgroup = berth_scheduler::backend::local::job_cgroup(&state.cgroups, dir, name)
        .map(|c| c.usage())
        .unwrap_or_default();
    if from_cgroup.cpu_usec.is_some() || from_cgroup.memory_bytes.is_some() {
        return from_cgroup;
    }
    std::fs::read_to_string(dir.process_group())
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .map(berth_scheduler::proc_usage::process_group_usage)
        .unwrap_or_default()
}

/// Every GPU's use now; none when `nvidia-smi` is missing or fails.
async fn nvidia_smi() -> Vec<usage::GpuUse> {
    let out = tokio::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=uuid,utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => usage::parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}
