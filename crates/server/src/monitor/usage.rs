//! What a sample of a job's use becomes: MLflow system metrics (Azure and MLflow name them
//! under `system/`), and how often samples are taken as a job runs on (so a month-long job
//! keeps thousands of points, not half a million).

use std::time::Duration;

use berth_core::Resources;
use berth_scheduler::cgroup::Usage;

/// Every 5 s for the first hour, every minute for the rest of the first day, then every
/// 10 minutes.
pub fn sample_interval(samples_taken: u64) -> Duration {
    match samples_taken {
        0..720 => Duration::from_secs(5),
        720..2100 => Duration::from_secs(60),
        _ => Duration::from_secs(600),
    }
}

/// The previous sample of a job, to turn CPU time into utilisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Previous {
    /// CPU time then (µs).
    pub cpu_usec: u64,
    /// Wall time between it and now (µs).
    pub elapsed_usec: u64,
}

/// The system metrics of one sample. CPU utilisation is of the job's CPU limit (of the
/// machine's cores when it has none), memory utilisation of its memory limit.
pub fn system_metrics(
    now: Usage,
    previous: Option<Previous>,
    limits: &Resources,
    machine_cpus: f64,
) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    if let (Some(cpu), Some(p)) = (now.cpu_usec, previous)
        && p.elapsed_usec > 0
        && cpu >= p.cpu_usec
    {
        let cores = (cpu - p.cpu_usec) as f64 / p.elapsed_usec as f64;
        let limit = match limits.cpu.millis() {
            0 => machine_cpus,
            m => m as f64 / 1000.0,
        };
        out.push(("system/cpu_cores_used", round(cores)));
        out.push((
            "system/cpu_utilization_percentage",
            round(100.0 * cores / limit.max(0.001)),
        ));
    }
    if let Some(bytes) = now.memory_bytes {
        out.push((
            "system/memory_usage_megabytes",
            round(bytes as f64 / 1_048_576.0),
        ));
        let limit = limits.memory.millis() / 1000;
        if limit > 0 {
            out.push((
                "system/memory_utilization_percentage",
                round(100.0 * bytes as f64 / limit as f64),
            ));
        }
    }
    out
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One GPU's use, as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuUse {
    /// Its UUID.
    pub uuid: String,
    /// Utilisation (%).
    pub utilization: f64,
    /// Memory in use (MiB).
    pub memory_mb: f64,
}

/// Reads `nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuUse> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Some(GpuUse {
                uuid: f.first()?.to_string(),
                utilization: f.get(1)?.parse().ok()?,
                memory_mb: f.get(2)?.parse().ok()?,
            })
        })
        .collect()
}

/// The GPU metrics of a job that holds `gpus` (in the order it was given them).
pub fn gpu_metrics(gpus: &[String], seen: &[GpuUse]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (i, id) in gpus.iter().enumerate() {
        if let Some(g) = seen.iter().find(|g| &g.uuid == id) {
            out.push((
                format!("system/gpu_{i}_utilization_percentage"),
                g.utilization,
            ));
            out.push((
                format!("system/gpu_{i}_memory_usage_megabytes"),
                g.memory_mb,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::quantity::Quantity;

    fn limits(cpu_millis: i128, memory: i128) -> Resources {
        Resources {
            cpu: Quantity::from_millis(cpu_millis),
            memory: Quantity::from_millis(memory * 1000),
            gpus: 0,
        }
    }

    #[test]
    fn cpu_is_a_share_of_the_limit_and_needs_two_samples() {
        let now = Usage {
            cpu_usec: Some(3_000_000),
            memory_bytes: None,
        };
        assert!(system_metrics(now, None, &limits(2000, 0), 8.0).is_empty());
        let prev = Previous {
            cpu_usec: 1_000_000,
            elapsed_usec: 2_000_000,
        };
        let m = system_metrics(now, Some(prev), &limits(2000, 0), 8.0);
        assert_eq!(
            m,
            vec![
                ("system/cpu_cores_used", 1.0),
                ("system/cpu_utilization_percentage", 50.0)
            ]
        );
        // No limit: a share of the machine.
        let m = system_metrics(now, Some(prev), &limits(0, 0), 4.0);
        assert_eq!(m[1], ("system/cpu_utilization_percentage", 25.0));
    }

    #[test]
    fn memory_is_in_megabytes_and_a_share_of_the_limit() {
        let now = Usage {
            cpu_usec: None,
            memory_bytes: Some(512 * 1_048_576),
        };
        let m = system_metrics(now, None, &limits(0, 2048 * 1_048_576), 1.0);
        assert_eq!(
            m,
            vec![
                ("system/memory_usage_megabytes", 512.0),
                ("system/memory_utilization_percentage", 25.0)
            ]
        );
    }

    #[test]
    fn samples_thin_out_as_a_job_runs_on() {
        assert_eq!(sample_interval(0), Duration::from_secs(5));
        assert_eq!(sample_interval(720), Duration::from_secs(60));
        assert_eq!(sample_interval(5000), Duration::from_secs(600));
        // A 30-day job: 720 + 1380 + the rest of 30 days at 10 minutes.
        let points = 720 + 1380 + (29 * 24 * 6);
        assert!(points < 7000, "{points}");
    }

    #[test]
    fn gpu_lines_are_matched_to_the_jobs_gpus_by_uuid() {
        let smi = "GPU-aaa, 87, 40123\nGPU-bbb, 3, 500\nbroken line\n";
        let seen = parse_nvidia_smi(smi);
        assert_eq!(seen.len(), 2);
        let m = gpu_metrics(&["GPU-bbb".to_string()], &seen);
        assert_eq!(
            m,
            vec![
                ("system/gpu_0_utilization_percentage".to_string(), 3.0),
                ("system/gpu_0_memory_usage_megabytes".to_string(), 500.0)
            ]
        );
    }
}
