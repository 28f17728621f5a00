//! `berth job ...`: create, show, list, stream, metrics, cancel, download.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use berth_core::api::{JobView, MetricPoint, OutputFile};
use berth_core::job::{ARTIFACTS_OUTPUT, JobStatus};
use futures_util::StreamExt;
use reqwest::Method;

use crate::cli::JobCommand;
use crate::client::{Client, seg};
use crate::failure::Failure;
use crate::output::Printer;

const COLUMNS: [(&str, &str); 6] = [
    ("Name", "name"),
    ("Status", "status"),
    ("Compute", "compute"),
    ("Instance type", "resources.instance_type"),
    ("Created", "creation_context.created_at"),
    ("Message", "status_message"),
];

const METRIC_COLUMNS: [(&str, &str); 4] = [
    ("Metric", "key"),
    ("Step", "step"),
    ("Timestamp", "timestamp"),
    ("Value", "value"),
];

/// Runs one job verb; returns the process exit code.
pub async fn run(client: &Client, out: &Printer, cmd: JobCommand) -> Result<i32, Failure> {
    match cmd {
        JobCommand::Create {
            file,
            name,
            set,
            stream,
        } => {
            let job = create(client, &file, name, set).await?;
            out.print(&job, &COLUMNS)?;
            if stream {
                follow(client, &job.name).await
            } else {
                Ok(0)
            }
        }
        JobCommand::Show { name } => {
            let job: JobView = client.get(&format!("/api/jobs/{}", seg(&name))).await?;
            out.print(&job, &COLUMNS).map(|_| 0)
        }
        JobCommand::List {
            parent_job_name,
            max_results,
            all_results,
            status,
            experiment_name,
            compute,
            tags,
            created_after,
            created_before,
            include_archived,
            archived_only,
        } => {
            let mut query = vec![format!(
                "max_results={}",
                max_results.unwrap_or(if all_results { 1000 } else { 50 })
            )];
            let mut add = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    query.push(format!("{k}={}", seg(&v)));
                }
            };
            add("parent", parent_job_name);
            add("status", (!status.is_empty()).then(|| status.join(",")));
            add("experiment", experiment_name);
            add("compute", compute);
            add("tag", (!tags.is_empty()).then(|| tags.join(",")));
            add("created_after", created_after);
            add("created_before", created_before);
            add(
                "archived",
                (include_archived || archived_only)
                    .then(|| if archived_only { "only" } else { "include" }.to_string()),
            );
            let base = format!("/api/jobs?{}", query.join("&"));
            let mut jobs: Vec<JobView> = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(t) => format!("{base}&continuation={}", seg(t)),
                    None => base.clone(),
                };
                let resp = client.send(Method::GET, &path, None::<&()>).await?;
                next = resp
                    .headers()
                    .get("berth-continuation")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let page: Vec<JobView> = resp.json().await.map_err(|e| {
                    Failure::new(format!("the server's answer is not readable: {e}"))
                })?;
                if all_results && out.streams_pages() {
                    // A long listing is printed as it comes, not held.
                    out.print(&page, &COLUMNS)?;
                } else {
                    jobs.extend(page);
                }
                if !all_results || next.is_none() {
                    break;
                }
            }
            if all_results && out.streams_pages() {
                return Ok(0);
            }
            out.print(&jobs, &COLUMNS).map(|_| 0)
        }
        JobCommand::Archive { name } => archive(client, out, &name, "archive").await,
        JobCommand::Prune {
            retain_days,
            experiment_name,
            dry_run,
        } => {
            let req = berth_core::api::PruneRequest {
                retain_days,
                experiment_name,
                dry_run,
            };
            let report: berth_core::api::PruneReport = client
                .call(Method::POST, "/api/jobs/prune", Some(&req))
                .await?;
            eprintln!(
                "{} {} job(s): {:.1} MB{}",
                if report.dry_run {
                    "would free"
                } else {
                    "freed"
                },
                report.jobs.len(),
                report.bytes as f64 / 1e6,
                if report.dry_run {
                    " (dry run: nothing removed)"
                } else {
                    ""
                }
            );
            out.print(
                &report,
                &[("Jobs", "jobs"), ("Bytes", "bytes"), ("Dry run", "dry_run")],
            )
            .map(|_| 0)
        }
        JobCommand::Restore { name } => archive(client, out, &name, "restore").await,
        JobCommand::Stream { name } => follow(client, &name).await,
        JobCommand::Metrics { name, metric } => {
            let mut path = format!("/api/jobs/{}/metrics", seg(&name));
            if let Some(m) = metric {
                path.push_str(&format!("?metric={}", seg(&m)));
            }
            let points: Vec<MetricPoint> = client.get(&path).await?;
            out.print(&points, &METRIC_COLUMNS).map(|_| 0)
        }
        JobCommand::Cancel { name } => {
            let job: JobView = client
                .call(
                    Method::POST,
                    &format!("/api/jobs/{}/cancel", seg(&name)),
                    None::<&()>,
                )
                .await?;
            out.print(&job, &COLUMNS).map(|_| 0)
        }
        JobCommand::Download {
            name,
            output_name,
            all,
            download_path,
        } => download(client, &name, output_name, all, &download_path).await,
    }
}

async fn create(
    client: &Client,
    file: &Path,
    name: Option<String>,
    set: Vec<String>,
) -> Result<JobView, Failure> {
    let req = super::assets::file_request(file, name, None, set)?;
    client.call(Method::POST, "/api/jobs", Some(&req)).await
}

/// Streams a job's log to stdout and its status changes to stderr until it ends.
pub async fn follow(client: &Client, name: &str) -> Result<i32, Failure> {
    let status_path = format!("/api/jobs/{}", seg(name));
    client.get::<JobView>(&status_path).await?;
    eprintln!("Streaming logs of job {name}; Ctrl-C stops streaming, not the job.");
    let logs_done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        let mut last = (None::<JobStatus>, None::<String>);
        loop {
            // A failed poll (a server restart, say) is retried; the log stream decides the end.
            if let Ok(job) = client.get::<JobView>(&status_path).await {
                let now = (Some(job.status), job.status_message.clone());
                if now != last {
                    let status = job.status.as_str();
                    match &now.1 {
                        Some(m) if job.status != JobStatus::Failed => {
                            eprintln!("[berth] {name}: {status} ({m})")
                        }
                        _ => eprintln!("[berth] {name}: {status}"),
                    }
                    last = now;
                }
                if job.status.is_terminal() {
                    return;
                }
            }
            if logs_done.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let logs = async {
        let result = stream_log(client, name).await;
        logs_done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    };
    let (logged, ()) = tokio::join!(logs, watch);
    logged?;
    let job: JobView = client.get(&status_path).await?;
    let summary = match (job.status, &job.status_message) {
        (JobStatus::Completed, _) => {
            eprintln!("Job {name} Completed.");
            return Ok(0);
        }
        (s, Some(m)) => format!("Job {name} {}: {m}", s.as_str()),
        (s, None) => format!("Job {name} {}.", s.as_str()),
    };
    eprintln!("{summary}");
    Ok(1)
}

/// Copies the job's log to stdout until the server ends the stream (the job ended).
async fn stream_log(client: &Client, name: &str) -> Result<(), Failure> {
    let path = format!("/api/jobs/{}/logs?follow=true", seg(name));
    let resp = client.send(Method::GET, &path, None::<&()>).await?;
    let mut body = resp.bytes_stream();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::new(format!("the log stream broke: {e}")))?;
        let _ = stdout.write_all(&chunk);
        let _ = stdout.flush();
    }
    Ok(())
}

async fn download(
    client: &Client,
    name: &str,
    output: Option<String>,
    all: bool,
    dest: &Path,
) -> Result<i32, Failure> {
    let job: JobView = client.get(&format!("/api/jobs/{}", seg(name))).await?;
    // Azure ML's layout: named outputs under named-outputs/<name>/, the job's artifacts (what it
    // wrote to ./outputs and ./logs, the output Azure calls `default`) under artifacts/.
    let artifacts_are_named = job.outputs.get(ARTIFACTS_OUTPUT).is_some();
    let outputs: Vec<String> = match (output, all) {
        (Some(o), _) => vec![o],
        (None, true) => job
            .outputs
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain((!artifacts_are_named).then(|| ARTIFACTS_OUTPUT.to_string()))
            .collect(),
        (None, false) => {
            return Err(Failure::new("say what to download")
                .hint("pass --output-name <name>, or --all for every output and the logs"));
        }
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    for o in &outputs {
        let list: Vec<OutputFile> = client
            .get(&format!("/api/jobs/{}/outputs/{}/files", seg(name), seg(o)))
            .await?;
        let root = if o == ARTIFACTS_OUTPUT && !artifacts_are_named {
            dest.join("artifacts")
        } else {
            dest.join("named-outputs").join(o)
        };
        for f in list {
            let path = f.path.split('/').map(seg).collect::<Vec<_>>().join("/");
            let resp = client
                .send(
                    Method::GET,
                    &format!("/api/jobs/{}/outputs/{}/files/{path}", seg(name), seg(o)),
                    None::<&()>,
                )
                .await?;
            let data = resp
                .bytes()
                .await
                .map_err(|e| Failure::new(format!("download of {} broke: {e}", f.path)))?;
            write_file(&root.join(&f.path), &data)?;
            files += 1;
            bytes += data.len() as u64;
        }
    }
    if all {
        let resp = client
            .send(
                Method::GET,
                &format!("/api/jobs/{}/logs", seg(name)),
                None::<&()>,
            )
            .await?;
        let data = resp
            .bytes()
            .await
            .map_err(|e| Failure::new(format!("log download broke: {e}")))?;
        write_file(
            &dest.join("artifacts").join("user_logs").join("std_log.txt"),
            &data,
        )?;
        files += 1;
        bytes += data.len() as u64;
    }
    eprintln!(
        "Downloaded {files} file(s), {bytes} bytes, to {}",
        dest.display()
    );
    Ok(0)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, data)
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}

/// `job archive` and `job restore`.
async fn archive(client: &Client, out: &Printer, name: &str, verb: &str) -> Result<i32, Failure> {
    let job: JobView = client
        .call(
            Method::POST,
            &format!("/api/jobs/{}/{verb}", seg(name)),
            None::<&()>,
        )
        .await?;
    out.print(&job, &COLUMNS).map(|_| 0)
}
