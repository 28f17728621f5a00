//! `GET .../files[/{*path}]`: what a Kubernetes pod's `berth fetch` reads when its files are
//! too large for a ConfigMap. Authorized by the job's or revision's own token, not the API token.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use berth_core::api::OutputFile;

use super::bearer;
use super::jobs::file_stream;
use crate::AppState;
use crate::error::ApiError;
use crate::services::pod_files::{self as svc, PodFiles};

async fn send(files: PodFiles, path: &str) -> Result<Response, ApiError> {
    let f = files.open(path).await?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(file_stream(f)),
    )
        .into_response())
}

/// `GET /api/jobs/{name}/files`: every file of the job's code and local inputs.
pub async fn job_listing(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<OutputFile>>, ApiError> {
    let files = svc::for_job(&s, &name, bearer(&headers)).await?;
    Ok(Json(files.listing().await?))
}

/// `GET /api/jobs/{name}/files/{*path}`: one of them.
pub async fn job_file(
    State(s): State<AppState>,
    Path((name, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    send(svc::for_job(&s, &name, bearer(&headers)).await?, &path).await
}

/// `GET /api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files`.
pub async fn revision_listing(
    State(s): State<AppState>,
    Path((endpoint, deployment, revision)): Path<(String, String, u32)>,
    headers: HeaderMap,
) -> Result<Json<Vec<OutputFile>>, ApiError> {
    let files = svc::for_deployment(&s, &endpoint, &deployment, revision, bearer(&headers)).await?;
    Ok(Json(files.listing().await?))
}

/// `GET /api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files/{*path}`.
pub async fn revision_file(
    State(s): State<AppState>,
    Path((endpoint, deployment, revision, path)): Path<(String, String, u32, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let files = svc::for_deployment(&s, &endpoint, &deployment, revision, bearer(&headers)).await?;
    send(files, &path).await
}
