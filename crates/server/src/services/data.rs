//! Data assets: `uri_file` and `uri_folder` versions registered from Azure's data YAML. Local
//! files and job outputs are copied under `$BERTH_HOME/data/blobs/` (the version never changes);
//! datastore paths and URLs are referenced, as Azure does.

use std::path::Path;

use berth_core::api::AssetCreateRequest;
use berth_core::spec::asset::{
    ArtifactKind, ArtifactSource, ArtifactSpec, ArtifactType, AssetRef, AssetVersion, DataRecord,
};
use berth_core::spec::data::{DataPath, DataType};
use berth_core::yaml::Source;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::{asset_files, versions};

/// Registers a data asset version from its file.
pub async fn create(state: &AppState, req: AssetCreateRequest) -> Result<DataRecord, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let spec = ArtifactSpec::parse(ArtifactKind::Data, &src, &req.set).map_err(ApiError::spec)?;
    let ArtifactType::Data(data_type) = spec.asset_type else {
        return Err(ApiError::Internal("a data file parsed as a model".into()));
    };
    let base = Path::new(&req.base_dir);
    let found = asset_files::locate(state, &src, &spec.path, &spec.source, base).await?;
    if let Some(p) = &found {
        let wrong = match data_type {
            DataType::UriFile if p.is_dir() => {
                Some("`type: uri_file` but it is a folder; use `type: uri_folder`")
            }
            DataType::UriFolder if !p.is_dir() => {
                Some("`type: uri_folder` (the default) but it is a file; use `type: uri_file`")
            }
            _ => None,
        };
        if let Some(m) = wrong {
            return Err(ApiError::spec(src.error_near(
                "path",
                Some(&spec.path),
                format!("{}: {m}", p.display()),
            )));
        }
    }
    let version = versions::version_for::<DataRecord>(state, &spec.name, spec.version).await?;
    if versions::find::<DataRecord>(state, &spec.name, &AssetVersion::Exact(version.clone()))
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists {
            kind: "data asset version",
            name: versions::key(&spec.name, &version),
            hint: Some("data asset versions never change; register a new version (--version or `version:`)".into()),
        });
    }
    let (location, files, bytes) = match (&spec.source, found) {
        (ArtifactSource::Data(d @ (DataPath::Url { .. } | DataPath::Datastore { .. })), _) => {
            (d.clone(), 0, 0)
        }
        (_, Some(p)) => {
            let copied = asset_files::store(&state.home.join("data"), &p).await?;
            let path = copied.entry_path().to_string_lossy().into_owned();
            (DataPath::Local { path }, copied.files, copied.bytes)
        }
        (_, None) => return Err(ApiError::Internal("a local data path was not found".into())),
    };
    let record = DataRecord {
        name: spec.name,
        version,
        data_type,
        path: spec.path,
        location,
        files,
        bytes,
        description: spec.description,
        tags: spec.tags,
        properties: spec.properties,
        created_at: OffsetDateTime::now_utc(),
    };
    versions::insert(state, &record).await?;
    Ok(record)
}

/// One data asset version by reference.
pub async fn resolve(state: &AppState, r: &AssetRef) -> Result<Option<DataRecord>, ApiError> {
    versions::find::<DataRecord>(state, &r.name, &r.version).await
}

/// One version, or the latest (`version` = `latest`).
pub async fn get(state: &AppState, name: &str, version: &str) -> Result<DataRecord, ApiError> {
    versions::get(state, name, version).await
}

/// Every data asset version, optionally of one name.
pub async fn list(state: &AppState, name: Option<&str>) -> Result<Vec<DataRecord>, ApiError> {
    Ok(versions::all::<DataRecord>(state, name)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect())
}
