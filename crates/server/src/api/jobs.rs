//! Handlers for jobs: create, show, list, cancel, logs (followed live) and output files.

use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::api::{JobCreateRequest, JobView, OutputFile};
use berth_scheduler::workdir::JobDir;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ApiJson;
use crate::AppState;
use crate::error::ApiError;
use crate::services::jobs as svc;

pub async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<JobCreateRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    svc::create(&s, req)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)))
}

pub async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = svc::get(&s, &name).await?;
    let mut view = svc::view(&s, &job);
    crate::mlflow::jobs::add_run(&s, &mut view).await?;
    crate::services::pipelines::add_live_status(&s, &mut view).await;
    Ok(Json(view))
}

#[derive(Deserialize)]
pub struct MetricsQuery {
    metric: Option<String>,
}

/// `GET /api/jobs/{name}/metrics[?metric=NAME]`: the history of one metric or of all.
pub async fn metrics(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Vec<berth_core::api::MetricPoint>>, ApiError> {
    svc::get(&s, &name).await?;
    let keys = crate::mlflow::jobs::metric_keys(&s, &name).await?;
    let wanted = match q.metric {
        Some(m) if !keys.contains(&m) => {
            return Err(ApiError::NotFound {
                kind: "metric",
                name: m,
                hint: Some(if keys.is_empty() {
                    format!(
                        "job `{name}` has logged no metrics (its script logs them with mlflow.log_metric or mlflow.autolog())"
                    )
                } else {
                    format!("job `{name}` logged: {}", keys.join(", "))
                }),
            });
        }
        Some(m) => vec![m],
        None => keys,
    };
    let mut out = Vec::new();
    for key in wanted {
        out.extend(crate::mlflow::jobs::history(&s, &name, &key).await?);
    }
    Ok(Json(out))
}

/// The response header that carries the next page's token.
pub const CONTINUATION: &str = "berth-continuation";

/// A page of jobs, newest first; the next page's token in the `berth-continuation` header.
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<crate::services::job_list::ListParams>,
) -> Result<Response, ApiError> {
    let (jobs, next) = crate::services::job_list::list(&s, &q).await?;
    let mut resp = Json(jobs).into_response();
    if let Some(t) = next.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(CONTINUATION, t);
    }
    Ok(resp)
}

/// `POST /api/jobs/{name}/archive`.
pub async fn archive(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    svc::set_archived(&s, &name, true).await.map(Json)
}

/// `POST /api/jobs/{name}/restore`.
pub async fn restore(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    svc::set_archived(&s, &name, false).await.map(Json)
}

pub async fn cancel(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    svc::cancel(&s, &name).await?;
    let job = svc::get(&s, &name).await?;
    Ok(Json(svc::view(&s, &job)))
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    offset: u64,
}

struct Tail {
    state: AppState,
    name: String,
    path: PathBuf,
    offset: u64,
    follow: bool,
    done: bool,
    changes: tokio::sync::watch::Receiver<u64>,
}

impl Tail {
    async fn read_more(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        match tokio::fs::File::open(&self.path).await {
            Ok(mut f) => {
                f.seek(std::io::SeekFrom::Start(self.offset)).await?;
                f.take(1 << 20).read_to_end(&mut buf).await?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.offset += buf.len() as u64;
        Ok(buf)
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if self.done {
                return None;
            }
            // Read the job's status before the file, so nothing written before the end is missed.
            let finished = !self.follow
                || svc::get(&self.state, &self.name)
                    .await
                    .map(|j| j.value.state.status().is_terminal())
                    .unwrap_or(true);
            match self.read_more().await {
                Ok(b) if !b.is_empty() => return Some(Ok(Bytes::from(b))),
                Ok(_) if finished => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), self.changes.changed())
                            .await;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The job's log from `offset`; with `follow=true`, kept open until the job ends.
pub async fn logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let stream = log_stream(s, name, q.offset, q.follow).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A job's log from `offset`: what is there, and with `follow` what comes until it ends.
pub async fn log_stream(
    s: AppState,
    name: String,
    offset: u64,
    follow: bool,
) -> Result<impl futures_util::Stream<Item = std::io::Result<Bytes>>, ApiError> {
    let job = svc::get(&s, &name).await?;
    let tail = Tail {
        path: JobDir::new(&job.value.workdir).log(),
        changes: s.jobs.subscribe(),
        state: s,
        name,
        offset,
        follow,
        done: false,
    };
    Ok(futures_util::stream::unfold(tail, |mut t| async move {
        t.next_chunk().await.map(|c| (c, t))
    }))
}

pub async fn output_files(
    State(s): State<AppState>,
    Path((name, output)): Path<(String, String)>,
) -> Result<Json<Vec<OutputFile>>, ApiError> {
    let root = svc::output_root(&s, &name, &output).await?;
    if !root.root.exists() {
        return Ok(Json(Vec::new()));
    }
    let files = tokio::task::spawn_blocking(move || root.files())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("cannot list output `{output}`: {e}")))?;
    Ok(Json(
        files
            .into_iter()
            .map(|(path, size)| OutputFile { path, size })
            .collect(),
    ))
}

pub async fn output_file(
    State(s): State<AppState>,
    Path((name, output, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let rel = berth_core::names::inside_path(&path)
        .ok_or_else(|| ApiError::BadRequest(format!("`{path}` is not a path inside the output")))?
        .to_path_buf();
    let root = svc::output_root(&s, &name, &output).await?;
    if !root.holds(&rel) {
        return Err(ApiError::BadRequest(format!(
            "`{path}` is not one of the job's artifacts (./outputs and ./logs)"
        )));
    }
    let base = root.root.clone();
    let f = tokio::task::spawn_blocking(move || berth_scheduler::tree::open_inside(&base, &rel))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(tokio::fs::File::from_std)
        .map_err(|_| ApiError::NotFound {
            kind: "output file",
            name: path.clone(),
            hint: Some(format!(
                "`berth job download --name {name} --output-name {output}` fetches every file"
            )),
        })?;
    let stream = file_stream(f);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

pub fn file_stream(f: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// `PUT /api/jobs/{name}/uploads/{output}/{*path}`: a Kubernetes job's pod uploads one output
/// file, with the job's own upload token (not the API token), while the job is unfinished.
pub async fn upload_output(
    State(s): State<AppState>,
    Path((name, output, path)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let dest = svc::upload_target(&s, &name, &output, &path, super::bearer(&headers)).await?;
    crate::services::job_outputs::write_streamed(&dest, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/jobs/prune`: retention on demand (with `dry_run`, what it would free).
pub async fn prune(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<berth_core::api::PruneRequest>,
) -> Result<Json<berth_core::api::PruneReport>, ApiError> {
    crate::services::retention::prune(&s, &req).await.map(Json)
}
