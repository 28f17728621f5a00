//! Inside a Kubernetes job's pod, `berth job-run` samples what the command uses (the
//! container's cgroup, else the command's process group; GPUs through `nvidia-smi`) and logs
//! it to the job's run as `system/*` metrics through the server's tracking API, with the
//! job's own token: what the server itself records for jobs on the local compute.

use std::time::Instant;

use berth_core::Resources;
use berth_scheduler::cgroup::Usage;
use berth_server::monitor::usage::{self, Previous};
use serde_json::json;

/// Where the job's run is, from the variables the pod was given.
struct Target {
    url: String,
    token: String,
    run_id: String,
}

fn target() -> Option<Target> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Target {
        url: var("MLFLOW_TRACKING_URI")?
            .trim_end_matches('/')
            .to_string(),
        token: var("MLFLOW_TRACKING_TOKEN")?,
        run_id: var("MLFLOW_RUN_ID")?,
    })
}

/// Starts sampling the command with process group `pgid`; none when the pod cannot reach
/// the job's run.
pub fn spawn(pgid: i32) -> Option<tokio::task::JoinHandle<()>> {
    let t = target()?;
    let http = crate::client::http_client(&t.url).ok()?;
    Some(tokio::spawn(async move {
        let mut previous: Option<(u64, Instant)> = None;
        let mut taken = 0u64;
        loop {
            tokio::time::sleep(usage::sample_interval(taken)).await;
            let now = Instant::now();
            let used = container_usage()
                .unwrap_or_else(|| berth_scheduler::proc_usage::process_group_usage(pgid));
            let prev = previous.zip(used.cpu_usec).map(|((cpu, at), _)| Previous {
                cpu_usec: cpu,
                elapsed_usec: now.duration_since(at).as_micros() as u64,
            });
            let machine = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let mut points: Vec<(String, f64)> =
                usage::system_metrics(used, prev, &limits(), machine)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
            points.extend(gpu_points().await);
            previous = used.cpu_usec.map(|c| (c, now));
            let stamp = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            let metrics: Vec<_> = points
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v, "timestamp": stamp, "step": taken}))
                .collect();
            let body = json!({"run_id": t.run_id, "metrics": metrics});
            let _ = http
                .post(format!("{}/api/2.0/mlflow/runs/log-batch", t.url))
                .bearer_auth(&t.token)
                .json(&body)
                .send()
                .await;
            taken += 1;
        }
    }))
}

/// The container's own cgroup (v2, as a pod sees it at `/sys/fs/cgroup`), when this process
/// is in a cgroup namespace of its own (`0::/`).
fn container_usage() -> Option<Usage> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    if own.trim() != "0::/" {
        return None;
    }
    let root = std::path::Path::new("/sys/fs/cgroup");
    let cpu_usec = std::fs::read_to_string(root.join("cpu.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec")?.trim().parse().ok());
    let memory_bytes = std::fs::read_to_string(root.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok();
    Some(Usage {
        cpu_usec,
        memory_bytes,
    })
}

/// The container's memory limit, when it has one; CPU is a share of what this process may use.
fn limits() -> Resources {
    let memory = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|m| m.trim().parse::<i128>().ok())
        .filter(|_| container_usage().is_some())
        .unwrap_or(0);
    Resources {
        memory: berth_core::quantity::Quantity::from_millis(memory * 1000),
        ..Resources::default()
    }
}

/// Every GPU the pod sees (its own), as `system/gpu_<i>_*`.
async fn gpu_points() -> Vec<(String, f64)> {
    let out = tokio::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=uuid,utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .await;
    let Some(o) = out.ok().filter(|o| o.status.success()) else {
        return Vec::new();
    };
    let seen = usage::parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout));
    let ids: Vec<String> = seen.iter().map(|g| g.uuid.clone()).collect();
    usage::gpu_metrics(&ids, &seen)
}

/// Stops sampling (the command ended).
pub fn stop(sampler: Option<tokio::task::JoinHandle<()>>) {
    if let Some(s) = sampler {
        s.abort();
    }
}
