//! Models: versions registered from Azure's model YAML (or flags), copied under
//! `$BERTH_HOME/models/blobs/` and never changed. The copy is `AZUREML_MODEL_DIR`: a folder
//! keeps its own name beneath it and a file sits in it, as Azure lays models out.

use std::path::{Path, PathBuf};

use berth_core::api::AssetCreateRequest;
use berth_core::serving::ModelRecord;
use berth_core::spec::asset::{
    ArtifactKind, ArtifactSpec, ArtifactType, AssetRef, AssetVersion, ModelType,
};
use berth_core::yaml::Source;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::{asset_files, versions};

/// Registers a model version from its file.
pub async fn create(state: &AppState, req: AssetCreateRequest) -> Result<ModelRecord, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let spec = ArtifactSpec::parse(ArtifactKind::Model, &src, &req.set).map_err(ApiError::spec)?;
    let ArtifactType::Model(model_type) = spec.asset_type else {
        return Err(ApiError::Internal("a model file parsed as data".into()));
    };
    let base = Path::new(&req.base_dir);
    let from = asset_files::locate(state, &src, &spec.path, &spec.source, base)
        .await?
        .ok_or_else(|| ApiError::BadRequest("a model cannot be registered from a URL".into()))?;
    if model_type == ModelType::MlflowModel && mlflow_folder(&from).is_none() {
        return Err(ApiError::spec(
            src.error_near(
                "path",
                Some(&spec.path),
                format!(
                    "`type: mlflow_model` but {} holds no MLmodel file",
                    from.display()
                ),
            )
            .hint("register the folder mlflow.save_model wrote (it holds MLmodel), or use type: custom_model"),
        ));
    }
    let version = versions::version_for::<ModelRecord>(state, &spec.name, spec.version).await?;
    if versions::find::<ModelRecord>(state, &spec.name, &AssetVersion::Exact(version.clone()))
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists {
            kind: "model version",
            name: versions::key(&spec.name, &version),
            hint: Some(
                "model versions never change; register a new version (--version or `version:`)"
                    .into(),
            ),
        });
    }
    let copied = asset_files::store(&state.home.join("models"), &from).await?;
    let record = ModelRecord {
        name: spec.name,
        version,
        model_type,
        path: copied.dir.to_string_lossy().into_owned(),
        source: spec.path,
        description: spec.description,
        tags: spec.tags,
        properties: spec.properties,
        stage: spec.stage,
        anonymous: false,
        files: copied.files,
        bytes: copied.bytes,
        created_at: OffsetDateTime::now_utc(),
    };
    versions::insert(state, &record).await?;
    Ok(record)
}

/// Copies a deployment's inline `model: {path: ...}` in as an anonymous model version (named
/// by its content, so the same files register once), so the deployment never serves files
/// that change under it.
pub async fn register_inline(
    state: &AppState,
    from: &Path,
    model_type: ModelType,
) -> Result<ModelRecord, ApiError> {
    let copied = asset_files::store(&state.home.join("models"), from).await?;
    let digest = copied
        .dir
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("sha256-")
                .to_string()
        })
        .unwrap_or_default();
    let name = format!("anonymous-{}", &digest[..digest.len().min(16)]);
    if let Some(existing) =
        versions::find::<ModelRecord>(state, &name, &AssetVersion::Exact("1".into())).await?
    {
        return Ok(existing);
    }
    let record = ModelRecord {
        name,
        version: "1".into(),
        model_type,
        path: copied.dir.to_string_lossy().into_owned(),
        source: from.to_string_lossy().into_owned(),
        description: None,
        tags: Default::default(),
        properties: Default::default(),
        stage: None,
        anonymous: true,
        files: copied.files,
        bytes: copied.bytes,
        created_at: OffsetDateTime::now_utc(),
    };
    match versions::insert(state, &record).await {
        // Registered by a deployment created at the same moment: the same files.
        Ok(()) | Err(ApiError::AlreadyExists { .. }) => Ok(record),
        Err(e) => Err(e),
    }
}

/// The folder holding `MLmodel`: the model folder itself, or the one folder registered in it.
pub fn mlflow_folder(dir: &Path) -> Option<PathBuf> {
    if dir.join("MLmodel").is_file() {
        return Some(dir.to_path_buf());
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    match entries.as_slice() {
        [only] if only.join("MLmodel").is_file() => Some(only.clone()),
        _ => None,
    }
}

/// One model version by reference (`azureml:<name>:<version>` or `@latest`).
pub async fn resolve(state: &AppState, r: &AssetRef) -> Result<ModelRecord, ApiError> {
    versions::find::<ModelRecord>(state, &r.name, &r.version)
        .await?
        .ok_or_else(|| versions::not_found::<ModelRecord>(&r.name, &r.version))
}

/// One model version, or the latest (`version` = `latest`).
pub async fn get(state: &AppState, name: &str, version: &str) -> Result<ModelRecord, ApiError> {
    versions::get(state, name, version).await
}

/// Every registered model version (of one name, if given); anonymous ones are left out.
pub async fn list(state: &AppState, name: Option<&str>) -> Result<Vec<ModelRecord>, ApiError> {
    Ok(versions::all::<ModelRecord>(state, name)
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|m| !m.anonymous || name.is_some())
        .collect())
}
