//! Environments: registered versions (immutable, `@latest` is the last registered), and the
//! resolution of what a job or deployment names into the Python environment Berth builds.

use std::path::{Path, PathBuf};

use berth_core::api::AssetCreateRequest;
use berth_core::conda::PythonEnv;
use berth_core::spec::environment::{
    AssetRef, AssetVersion, CondaFile, EnvironmentRecord, EnvironmentSpec, ResolvedEnvironment,
};
use berth_core::spec::job::Environment;
use berth_core::yaml::Source;
use berth_store::{Kind, StoreError, Stored};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

fn key(name: &str, version: &str) -> String {
    format!("{name}:{version}")
}

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
    let version = match spec.version.clone() {
        Some(v) => v,
        None => {
            let versions = versions_of(state, Some(&spec.name)).await?;
            next_version(versions.iter().map(|s| s.value.version.as_str()))
        }
    };
    let record = EnvironmentRecord {
        name: spec.name.clone(),
        version: version.clone(),
        image: spec.image,
        conda_file: conda_text,
        python,
        description: spec.description,
        tags: spec.tags,
        created_at: OffsetDateTime::now_utc(),
    };
    match state
        .store
        .insert(Kind::Environment, &key(&spec.name, &version), None, &record)
        .await
    {
        Ok(_) => Ok(record),
        Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            kind: "environment version",
            name: key(&spec.name, &version),
            hint: Some(
                "environment versions never change; register a new version (--version or `version:`)"
                    .into(),
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The next free integer version: one more than the largest numeric version.
fn next_version<'a>(existing: impl Iterator<Item = &'a str>) -> String {
    let max = existing.filter_map(|v| v.parse::<u64>().ok()).max();
    (max.unwrap_or(0) + 1).to_string()
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

/// Every environment version (of one name, if given), in registration order.
async fn versions_of(
    state: &AppState,
    name: Option<&str>,
) -> Result<Vec<Stored<EnvironmentRecord>>, ApiError> {
    let all = state
        .store
        .list::<EnvironmentRecord>(Kind::Environment)
        .await?;
    Ok(all
        .into_iter()
        .filter(|s| name.is_none_or(|n| s.value.name == n))
        .collect())
}

/// Every environment version, optionally of one name.
pub async fn list(
    state: &AppState,
    name: Option<&str>,
) -> Result<Vec<EnvironmentRecord>, ApiError> {
    Ok(versions_of(state, name)
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
    let wanted = match version {
        "latest" => AssetVersion::Latest,
        v => AssetVersion::Exact(v.to_string()),
    };
    find(state, name, &wanted)
        .await?
        .ok_or_else(|| not_found(name, &wanted))
}

async fn find(
    state: &AppState,
    name: &str,
    version: &AssetVersion,
) -> Result<Option<EnvironmentRecord>, ApiError> {
    Ok(match version {
        AssetVersion::Exact(v) => state
            .store
            .get::<EnvironmentRecord>(Kind::Environment, &key(name, v))
            .await?
            .map(|s| s.value),
        AssetVersion::Latest => versions_of(state, Some(name))
            .await?
            .into_iter()
            .max_by_key(|s| s.seq)
            .map(|s| s.value),
    })
}

fn describe(name: &str, version: &AssetVersion) -> String {
    match version {
        AssetVersion::Exact(v) => key(name, v),
        AssetVersion::Latest => format!("{name}@latest"),
    }
}

fn register_hint(name: &str) -> String {
    format!(
        "register it with `berth environment create --file env.yml`; `berth environment list --name {name}` shows its versions"
    )
}

fn not_found(name: &str, version: &AssetVersion) -> ApiError {
    ApiError::NotFound {
        kind: "environment",
        name: describe(name, version),
        hint: Some(register_hint(name)),
    }
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
            match find(state, &r.name, &r.version).await? {
                Some(rec) => Ok(Some(ResolvedEnvironment {
                    source: key(&format!("azureml:{}", rec.name), &rec.version),
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
                            describe(&r.name, &r.version)
                        ),
                    )
                    .hint(register_hint(&r.name)),
                )),
            }
        }
    }
}

/// Builds the Python environment of `env`, if it has one and it is not built yet; the build's
/// output goes to `log`.
pub async fn ensure_built(
    state: &AppState,
    env: Option<&ResolvedEnvironment>,
    log: &Path,
) -> Result<(), String> {
    let Some(definition) = env.and_then(|e| e.python.as_ref()) else {
        return Ok(());
    };
    let mut sink = berth_scheduler::envs::BuildLog::append(log)
        .await
        .map_err(|e| e.to_string())?;
    state
        .envs
        .ensure(definition, &mut sink)
        .await
        .map(|_| ())
        .map_err(|e| format!("{e} (the build's log: {})", log.display()))
}

/// The interpreter of `env`'s built Python environment, if it has one.
pub fn interpreter(state: &AppState, env: Option<&ResolvedEnvironment>) -> Option<PathBuf> {
    env.and_then(|e| e.python.as_ref())
        .map(|p| state.envs.location(p).python())
}

#[cfg(test)]
mod tests {
    use super::next_version;

    #[test]
    fn versions_count_up_from_the_largest_number() {
        assert_eq!(next_version([].into_iter()), "1");
        assert_eq!(next_version(["1", "7", "3", "beta"].into_iter()), "8");
    }
}
