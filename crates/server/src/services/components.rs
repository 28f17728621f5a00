//! Components: registered versions (immutable; `@latest` is the last registered), with their
//! code copied at registration so a pipeline runs what was registered; and the resolution of
//! a pipeline step's `component:` (registered, a file, or written in place).

use std::path::{Path, PathBuf};

use berth_core::api::AssetCreateRequest;
use berth_core::pipeline::plan::Resolved;
use berth_core::pipeline::spec::ComponentRef;
use berth_core::spec::asset::AssetRef;
use berth_core::spec::component::{ComponentRecord, ComponentSpec};
use berth_core::yaml::{Source, SpecError};
use serde_json::Value;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::versions;

/// Registers a component version from its file.
pub async fn create(
    state: &AppState,
    req: AssetCreateRequest,
) -> Result<ComponentRecord, ApiError> {
    let src = Source::new(&req.file, &req.yaml);
    let mut spec = berth_core::overrides::parse_with_sets(&src, &req.set, ComponentSpec::parse)
        .map_err(ApiError::spec)?;
    let version =
        versions::version_for::<ComponentRecord>(state, &spec.name, spec.version.clone()).await?;
    if versions::find::<ComponentRecord>(
        state,
        &spec.name,
        &berth_core::spec::asset::AssetVersion::Exact(version.clone()),
    )
    .await?
    .is_some()
    {
        return Err(ApiError::AlreadyExists {
            kind: "component version",
            name: versions::key(&spec.name, &version),
            hint: Some(
                "component versions never change; register a new version (--version or `version:`)"
                    .into(),
            ),
        });
    }
    spec.version = Some(version.clone());
    let folder = state
        .home
        .join("components")
        .join(&spec.name)
        .join(&version);
    let base = PathBuf::from(&req.base_dir);
    if let Some(code) = spec
        .body
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string)
        && !code.contains("://")
        && !code.starts_with("azureml:")
    {
        let from = base.join(&code);
        let to = folder.join("code");
        let copied = {
            let (from, to) = (from.clone(), to.clone());
            tokio::task::spawn_blocking(move || berth_scheduler::tree::copy_tree(&from, &to))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        if let Err(e) = copied {
            let _ = tokio::fs::remove_dir_all(&folder).await;
            return Err(ApiError::spec(
                src.error_near(
                    "code",
                    Some(&code),
                    format!("cannot copy the code folder {}: {e}", from.display()),
                )
                .hint("`code` is relative to the component file's folder"),
            ));
        }
        spec.body.insert(
            "code".into(),
            Value::String(to.to_string_lossy().into_owned()),
        );
    }
    // An inline environment's conda file is read now, so the version never changes.
    if let Some(Value::Object(env)) = spec.body.get_mut("environment")
        && let Some(conda) = env
            .get("conda_file")
            .and_then(Value::as_str)
            .map(str::to_string)
    {
        let path = base.join(&conda);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ApiError::spec(src.error_near(
                "conda_file",
                Some(&conda),
                format!("cannot read {}: {e}", path.display()),
            ))
        })?;
        let dst = folder.join("conda.yaml");
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(&dst, text))
            .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", dst.display())))?;
        env.insert(
            "conda_file".into(),
            Value::String(dst.to_string_lossy().into_owned()),
        );
    }
    let record = ComponentRecord {
        name: spec.name.clone(),
        version,
        spec,
        base_dir: folder.to_string_lossy().into_owned(),
        created_at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = versions::insert(state, &record).await {
        let _ = tokio::fs::remove_dir_all(&folder).await;
        return Err(e);
    }
    Ok(record)
}

/// Every component version, optionally of one name.
pub async fn list(state: &AppState, name: Option<&str>) -> Result<Vec<ComponentRecord>, ApiError> {
    Ok(versions::all(state, name)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect())
}

/// One version, or the latest (`version` = `latest`).
pub async fn get(state: &AppState, name: &str, version: &str) -> Result<ComponentRecord, ApiError> {
    versions::get(state, name, version).await
}

/// The component a step names; `base_dir` is the pipeline file's folder. The error says which
/// step and what to do.
pub async fn resolve(
    state: &AppState,
    src: &Source<'_>,
    step: &str,
    reference: &ComponentRef,
    base_dir: &Path,
) -> Result<Resolved, ApiError> {
    let at = |m: String| ApiError::spec(src.error_near(step, None, format!("step `{step}`: {m}")));
    match reference {
        ComponentRef::Registered(written) => {
            let r = AssetRef::parse(written).map_err(at)?;
            let found = versions::find::<ComponentRecord>(state, &r.name, &r.version).await?;
            let c = found.ok_or_else(|| {
                ApiError::spec(
                    src.error_near(
                        step,
                        None,
                        format!(
                            "step `{step}`: component `{}` is not registered",
                            versions::describe(&r.name, &r.version)
                        ),
                    )
                    .hint(versions::register_hint::<ComponentRecord>(&r.name)),
                )
            })?;
            Ok(Resolved {
                label: format!("{}:{}", c.name, c.version),
                spec: c.spec,
                base_dir: c.base_dir,
            })
        }
        ComponentRef::File(path) => {
            let full = base_dir.join(path);
            let text = tokio::fs::read_to_string(&full).await.map_err(|e| {
                at(format!(
                    "cannot read component file {}: {e}",
                    full.display()
                ))
            })?;
            let name = full.to_string_lossy().into_owned();
            let spec = ComponentSpec::parse(&Source::new(&name, &text)).map_err(ApiError::spec)?;
            Ok(Resolved {
                spec,
                base_dir: full
                    .parent()
                    .unwrap_or(base_dir)
                    .to_string_lossy()
                    .into_owned(),
                label: path.clone(),
            })
        }
        ComponentRef::Inline(v) => {
            let mut v = v.clone();
            // A component written in place needs no name of its own.
            if v.get("name").is_none() {
                v["name"] = Value::String(step.to_string());
            }
            let file = format!("{} (step {step}'s component)", src.name);
            let text = v.to_string();
            let spec = ComponentSpec::parse(&Source::new(&file, &text)).map_err(|e| {
                ApiError::spec(SpecError {
                    position: src.locate(step, None),
                    ..e
                })
            })?;
            Ok(Resolved {
                spec,
                base_dir: base_dir.to_string_lossy().into_owned(),
                label: format!("(inline in step {step})"),
            })
        }
    }
}
