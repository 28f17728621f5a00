//! Environments: registered versions (immutable, `@latest` is the last registered), and the
//! resolution of what a job or deployment names into the Python environment Berth builds.

use std::path::Path;

use berth_core::api::AssetCreateRequest;
use berth_core::conda::PythonEnv;
use berth_core::spec::environment::{
    AssetRef, CondaFile, EnvironmentRecord, EnvironmentSpec, ResolvedEnvironment,
};
use berth_core::spec::job::Environment;
use berth_core::yaml::Source;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::versions;

/// Registers an environment version from its file.
pub async fn create(
    state: &AppState,
    req: AssetCreateRequest,
) -> Result<EnvironmentRecord, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let spec = EnvironmentSpec::parse(&src, &req.set).map_err(ApiError::spec)?;
    let base = Path::new(&req.base_dir);
    let (conda_text, python) = match &spec.conda_file {
        Some(c) => {
            let (text, env) = read_conda(&src, c, base)?;
            (Some(text), Some(env))
        }
        None => (None, None),
    };
    let version =
        versions::version_for::<EnvironmentRecord>(state, &spec.name, spec.version).await?;
    let record = EnvironmentRecord {
        name: spec.name,
        version,
        image: spec.image,
        conda_file: conda_text,
        python,
        description: spec.description,
        tags: spec.tags,
        created_at: OffsetDateTime::now_utc(),
    };
    versions::insert(state, &record).await?;
    Ok(record)
}

/// Reads and translates a conda file written as a path (relative to `base`) or inline.
fn read_conda(
    src: &Source<'_>,
    conda: &CondaFile,
    base: &Path,
) -> Result<(String, PythonEnv), ApiError> {
    let (name, text) = match conda {
        CondaFile::Path(p) => {
            let full = base.join(p);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                ApiError::spec(
                    src.error_near(
                        "conda_file",
                        Some(p),
                        format!("cannot read conda file {}: {e}", full.display()),
                    )
                    .hint("`conda_file` is relative to the YAML file's folder"),
                )
            })?;
            (p.clone(), text)
        }
        // JSON is YAML: the inline mapping parses as a conda file of its own.
        CondaFile::Inline(v) => ("conda_file (inline)".to_string(), v.to_string()),
    };
    let env = PythonEnv::from_conda(&Source::new(&name, &text)).map_err(ApiError::spec)?;
    Ok((text, env))
}

/// Every environment version, optionally of one name.
pub async fn list(
    state: &AppState,
    name: Option<&str>,
) -> Result<Vec<EnvironmentRecord>, ApiError> {
    Ok(versions::all(state, name)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect())
}

/// One version, or the latest (`version` = `latest`).
pub async fn get(
    state: &AppState,
    name: &str,
    version: &str,
) -> Result<EnvironmentRecord, ApiError> {
    versions::get(state, name, version).await
}

/// Resolves what a job or deployment file says about its environment. A conda file is read and
/// translated now, so the job runs with what was submitted even if the file changes later.
pub async fn resolve(
    state: &AppState,
    src: &Source<'_>,
    env: Option<&Environment>,
    base: &Path,
) -> Result<Option<ResolvedEnvironment>, ApiError> {
    let Some(env) = env else {
        return Ok(None);
    };
    match env {
        Environment::Inline { image, conda_file } => {
            let python = match conda_file {
                Some(v) => {
                    let c = CondaFile::from_value(v)
                        .map_err(|m| ApiError::spec(src.error_near("conda_file", None, m)))?;
                    Some(read_conda(src, &c, base)?.1)
                }
                None => None,
            };
            let source = match (conda_file, image) {
                (Some(serde_json::Value::String(p)), _) => format!("conda_file {p}"),
                (Some(_), _) => "inline conda_file".to_string(),
                (None, Some(i)) => format!("image {i}"),
                (None, None) => "inline".to_string(),
            };
            Ok(Some(ResolvedEnvironment {
                source,
                image: image.clone(),
                python,
            }))
        }
        Environment::Reference(written) => {
            let r = AssetRef::parse(written)
                .map_err(|m| ApiError::spec(src.error_near("environment", Some(written), m)))?;
            match versions::find::<EnvironmentRecord>(state, &r.name, &r.version).await? {
                Some(rec) => Ok(Some(ResolvedEnvironment {
                    source: format!("azureml:{}:{}", rec.name, rec.version),
                    image: rec.image,
                    python: rec.python,
                })),
                // Azure's curated and registry environments cannot be fetched here: recorded.
                None if r.from_azure => Ok(Some(ResolvedEnvironment {
                    source: written.clone(),
                    image: None,
                    python: None,
                })),
                None => Err(ApiError::spec(
                    src.error_near(
                        "environment",
                        Some(written),
                        format!(
                            "environment `{}` does not exist",
                            versions::describe(&r.name, &r.version)
                        ),
                    )
                    .hint(versions::register_hint::<EnvironmentRecord>(&r.name)),
                )),
            }
        }
    }
}
