//! Models: versioned, copied under `$BERTH_HOME/models/<name>/<version>`, immutable once created.

use std::path::PathBuf;

use berth_core::names::validate_name;
use berth_core::serving::ModelRecord;
use berth_scheduler::workdir::{copy_tree, list_files};
use berth_store::{Kind, StoreError};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

/// `POST /api/models`.
#[derive(Debug, Deserialize)]
pub struct ModelCreate {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// A file or folder on the server's machine (absolute).
    pub path: String,
}

fn key(name: &str, version: &str) -> String {
    format!("{name}:{version}")
}

/// Registers a model version by copying its files.
pub async fn create(state: &AppState, req: ModelCreate) -> Result<ModelRecord, ApiError> {
    validate_name("model", &req.name).map_err(ApiError::BadRequest)?;
    validate_name("model version", &req.version).map_err(ApiError::BadRequest)?;
    let src = PathBuf::from(&req.path);
    if !src.is_absolute() || !src.exists() {
        return Err(ApiError::BadRequest(format!(
            "model path {} does not exist",
            req.path
        )));
    }
    if get(state, &req.name, &req.version).await.is_ok() {
        return Err(ApiError::AlreadyExists {
            kind: "model version",
            name: key(&req.name, &req.version),
            hint: Some("model versions never change; create a new version".into()),
        });
    }
    let models = state.home.join("models");
    let tmp = models.join(format!(".incoming-{}", rand::random::<u64>()));
    let (s, d, root) = (src.clone(), tmp.clone(), models.clone());
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64, PathBuf)> {
        if s.is_dir() {
            copy_tree(&s, &d)?;
        } else {
            std::fs::create_dir_all(&d)?;
            std::fs::copy(&s, d.join(s.file_name().unwrap_or_default()))?;
        }
        let files = list_files(&d)?;
        // Content-addressed: the same files are stored once, whatever the name or version.
        let blob = root
            .join("blobs")
            .join(format!("sha256-{}", digest(&d, &files)?));
        if blob.exists() {
            std::fs::remove_dir_all(&d)?;
        } else {
            std::fs::create_dir_all(root.join("blobs"))?;
            std::fs::rename(&d, &blob)?;
        }
        Ok((files.len() as u64, files.iter().map(|f| f.1).sum(), blob))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        ApiError::Internal(format!("cannot copy the model: {e}"))
    })?;
    let record = ModelRecord {
        name: req.name.clone(),
        version: req.version.clone(),
        path: copied.2.to_string_lossy().into_owned(),
        source: req.path,
        files: copied.0,
        bytes: copied.1,
        created_at: OffsetDateTime::now_utc(),
    };
    match state
        .store
        .insert(Kind::Model, &key(&req.name, &req.version), None, &record)
        .await
    {
        Ok(_) => Ok(record),
        Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            kind: "model version",
            name: key(&req.name, &req.version),
            hint: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// SHA-256 over every file's relative path and contents, in path order.
fn digest(root: &std::path::Path, files: &[(String, u64)]) -> std::io::Result<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (rel, _) in files {
        ctx.update(rel.as_bytes());
        ctx.update(&[0]);
        ctx.update(&std::fs::read(root.join(rel))?);
        ctx.update(&[0]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// One model version.
pub async fn get(state: &AppState, name: &str, version: &str) -> Result<ModelRecord, ApiError> {
    state.store.get::<ModelRecord>(Kind::Model, &key(name, version)).await?.map(|s| s.value).ok_or_else(|| ApiError::NotFound {
        kind: "model",
        name: key(name, version),
        hint: Some(format!("register it with `berth model create --name {name} --version {version} --path <folder>`")),
    })
}

/// Every model version.
pub async fn list(state: &AppState) -> Result<Vec<ModelRecord>, ApiError> {
    Ok(state
        .store
        .list::<ModelRecord>(Kind::Model)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect())
}
