//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`): a job's own run keeps
//! its artifacts with the job's outputs (`./outputs` of its working folder, which
//! `berth job download` fetches); other runs and logged models under
//! `$BERTH_HOME/mlflow-artifacts/`.

use std::path::PathBuf;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_scheduler::workdir::JobDir;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::MlflowError;
use super::request::Req;
use crate::AppState;
use crate::error::ApiError;

/// Where an artifact path's files are: a folder, and the path inside it.
struct Place {
    root: PathBuf,
    rel: PathBuf,
}

/// Maps `path` (`<experiment>/<run>/artifacts/...` or `<experiment>/models/<id>/artifacts/...`)
/// to its folder, if the caller may reach it.
async fn place(s: &AppState, c: &Caller, path: &str) -> Result<Place, MlflowError> {
    let path = path.trim_matches('/');
    let unsafe_path =
        || MlflowError::Invalid(format!("`{path}` is not a path inside the artifact store"));
    let segs: Vec<&str> = path.split('/').collect();
    if segs
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || s.contains('\0'))
    {
        return Err(unsafe_path());
    }
    let shared = || Place {
        root: s.home.join("mlflow-artifacts"),
        rel: PathBuf::from(path),
    };
    match segs.as_slice() {
        [_, "models", id, ..] => {
            let m = s.store.logged_model(id).await?;
            match m {
                Some(m) => super::logged_models::may_touch(s, c, &m).await?,
                None => c.workspace_only(&format!(
                    "reach `{path}`, which no logged model of its runs holds"
                ))?,
            }
            Ok(shared())
        }
        [_, run_id, rest @ ..] => match s.store.run_info(run_id).await? {
            Some(run) => {
                c.may_touch(&run)?;
                let own_job = run.job_name.as_deref() == Some(run.run_id.as_str());
                match (own_job, rest) {
                    (true, ["artifacts", inner @ ..]) => {
                        let job = crate::services::records::job(s, run_id)
                            .await
                            .map_err(|e| MlflowError::NotFound(e.to_string()))?;
                        Ok(Place {
                            root: JobDir::new(&job.value.workdir).code().join("outputs"),
                            rel: inner.iter().collect(),
                        })
                    }
                    _ => Ok(shared()),
                }
            }
            None => {
                c.workspace_only(&format!(
                    "reach `{path}`, which is not under one of its runs"
                ))?;
                Ok(shared())
            }
        },
        _ => {
            c.workspace_only(&format!("reach `{path}`"))?;
            Ok(shared())
        }
    }
}

fn api(e: ApiError) -> MlflowError {
    match e {
        ApiError::BadRequest(m) => MlflowError::Invalid(m),
        other => MlflowError::Internal(other.to_string()),
    }
}

/// `GET artifacts?path=`: the files and folders directly in a folder.
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let path = req.str("path").unwrap_or_default();
    let p = place(&s, &c, path).await?;
    let dir = if p.rel.as_os_str().is_empty() {
        p.root.clone()
    } else {
        p.root.join(&p.rel)
    };
    let files = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Value>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Uploads in progress are not artifacts yet.
            if name.ends_with(".upload") && name.starts_with('.') {
                continue;
            }
            let meta = entry.metadata()?;
            let mut f = json!({"path": name, "is_dir": meta.is_dir()});
            if meta.is_file() {
                f["file_size"] = json!(meta.len());
            }
            out.push(f);
        }
        Ok(out)
    })
    .await
    .map_err(|e| MlflowError::Internal(e.to_string()))?
    .map_err(|e| MlflowError::Internal(e.to_string()))?;
    Ok(Json(json!({"files": files})))
}

/// `GET artifacts/<path>`: one file, streamed.
pub async fn download(
    State(s): State<AppState>,
    c: Caller,
    Path(path): Path<String>,
) -> Result<Response, MlflowError> {
    let p = place(&s, &c, &path).await?;
    let file =
        tokio::task::spawn_blocking(move || berth_scheduler::tree::open_inside(&p.root, &p.rel))
            .await
            .map_err(|e| MlflowError::Internal(e.to_string()))?
            .map_err(|_| MlflowError::NotFound(format!("no artifact at `{path}`")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or_default();
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(MlflowError::NotFound(format!(
            "`{path}` is a folder, not a file"
        )));
    }
    let stream = crate::api::file_stream(tokio::fs::File::from_std(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `PUT artifacts/<path>`: one file, streamed to a temporary and renamed into place.
pub async fn upload(
    State(s): State<AppState>,
    c: Caller,
    Path(path): Path<String>,
    body: Body,
) -> Result<StatusCode, MlflowError> {
    let p = place(&s, &c, &path).await?;
    if p.rel.as_os_str().is_empty() {
        return Err(MlflowError::Invalid(format!(
            "`{path}` names a folder; upload a file under it"
        )));
    }
    let dest = tokio::task::spawn_blocking(move || {
        berth_scheduler::tree::writable_inside(&p.root, &p.rel)
    })
    .await
    .map_err(|e| MlflowError::Internal(e.to_string()))?
    .map_err(|e| MlflowError::Invalid(format!("cannot upload `{path}`: {e}")))?;
    crate::services::job_outputs::write_streamed(&dest, body.into_data_stream())
        .await
        .map_err(api)?;
    Ok(StatusCode::OK)
}
