//! A deployment file made into a revision: validated against the workspace (endpoint, name,
//! instance type, resources), its model resolved (an inline one copied in), what answers
//! requests chosen (a scoring script, Berth's MLflow scorer, or native ONNX), its environment
//! resolved, and its code snapshotted into the revision's folder.

use std::path::{Path, PathBuf};

use berth_core::serving::{
    DeploymentRecord, DeploymentSource, DeploymentState, EndpointRecord, ModelRecord,
    deployment_key,
};
use berth_core::spec::asset::{AssetRef, AssetVersion, ModelType};
use berth_core::spec::deployment::{DeploymentSpec, ModelRef};
use berth_core::spec::environment::ResolvedEnvironment;
use berth_core::spec::instance_type::{DEFAULT_INSTANCE_TYPE, InstanceType};
use berth_core::yaml::{Source, SpecError};
use berth_scheduler::workdir::{RevisionDir, copy_tree};
use berth_store::Stored;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::deployments::DeploymentCreate;
use crate::services::resources::find_instance_type;
use crate::services::{models, records};

/// Validates a deployment file against the workspace and snapshots its code as the next
/// revision (1 for a new deployment; for an update, `current` is what serves now).
pub async fn prepare(
    state: &AppState,
    endpoint: &str,
    req: &DeploymentCreate,
    current: Option<&DeploymentRecord>,
) -> Result<(DeploymentRecord, Staged), ApiError> {
    let (source, reuse_code) = source_of(req, current)?;
    let src = Source::new(&source.file, &source.yaml);
    let spec = berth_core::overrides::parse_with_sets(&src, &req.set, DeploymentSpec::parse)
        .map_err(ApiError::spec)?;
    let applied = DeploymentSource {
        yaml: if req.set.is_empty() {
            source.yaml.clone()
        } else {
            berth_core::overrides::apply(&src, &req.set).map_err(ApiError::spec)?
        },
        ..source.clone()
    };
    let ep = check_target(state, endpoint, &src, &spec, current.is_none()).await?;
    let base = PathBuf::from(&source.base_dir);
    let model = resolve_model(state, &src, spec.model.as_ref(), &base).await?;
    let scoring = scoring(state, &src, &spec, model.as_ref(), reuse_code, &base).await?;
    let instance_type = instance_type_for(state, &src, &spec, &ep.value).await?;
    let environment = environment_for(state, &src, &spec, &base, scoring.mlflow.as_deref()).await?;
    let (revision, initial) = match current {
        Some(c) => (c.revision + 1, DeploymentState::Updating),
        None => (1, DeploymentState::Creating),
    };
    let (mut record, staged) = snapshot_record(
        state,
        endpoint,
        spec,
        model.map(|m| PathBuf::from(m.path)),
        scoring.code,
        instance_type,
        revision,
        initial,
    )
    .await?;
    record.environment = environment;
    record.source = Some(applied);
    record.uid = current.map_or_else(
        || format!("{:016x}", rand::random::<u64>()),
        |c| c.uid.clone(),
    );
    Ok((record, staged))
}

/// The file to make the revision from, and a code snapshot to reuse: an update with no file
/// starts from the current revision's file and code.
fn source_of(
    req: &DeploymentCreate,
    current: Option<&DeploymentRecord>,
) -> Result<(DeploymentSource, Option<PathBuf>), ApiError> {
    if !req.yaml.is_empty() {
        let source = DeploymentSource {
            file: req.file.clone(),
            yaml: req.yaml.clone(),
            base_dir: req.base_dir.clone(),
        };
        return Ok((source, None));
    }
    match current.and_then(|c| c.source.clone().map(|s| (c, s))) {
        Some((c, s)) => Ok((s, Some(RevisionDir::of(&c.dir, c.revision).code()))),
        None => Err(ApiError::BadRequest(
            "give the deployment file (--file): there is no earlier file to apply --set to".into(),
        )),
    }
}

/// The endpoint the file names, which must be the one in the URL and exist; a new deployment's
/// name must be free.
async fn check_target(
    state: &AppState,
    endpoint: &str,
    src: &Source<'_>,
    spec: &DeploymentSpec,
    new: bool,
) -> Result<Stored<EndpointRecord>, ApiError> {
    if spec.endpoint_name != endpoint {
        return Err(ApiError::BadRequest(format!(
            "the file is for endpoint `{}`, not `{endpoint}`",
            spec.endpoint_name
        )));
    }
    let ep = records::endpoint(state, endpoint).await.map_err(|_| {
        ApiError::spec(
            src.error_near(
                "endpoint_name",
                Some(endpoint),
                format!("online endpoint `{endpoint}` does not exist"),
            )
            .hint("create it first with `berth online-endpoint create -f endpoint.yaml`"),
        )
    })?;
    if !new {
        return Ok(ep);
    }
    let Ok(existing) = records::deployment(state, endpoint, &spec.name).await else {
        return Ok(ep);
    };
    let key = deployment_key(endpoint, &spec.name);
    let busy = matches!(
        existing.value.state,
        DeploymentState::Creating | DeploymentState::Deleting
    );
    Err(if busy {
        ApiError::Conflict {
            message: format!(
                "deployment `{key}` is {} already",
                existing.value.state.name()
            ),
            hint: Some("wait for it to finish".into()),
        }
    } else {
        ApiError::AlreadyExists {
            kind: "online deployment",
            name: key,
            hint: Some("delete it first, or use another name".into()),
        }
    })
}

/// What answers requests: the code folder and scoring script, if any, and the folder of an
/// MLflow model served by Berth's scorer.
struct Scoring {
    code: Option<(PathBuf, String)>,
    mlflow: Option<PathBuf>,
}

/// With a scoring script: Python workers. Without one: an MLflow model with Berth's scorer,
/// or the model's .onnx file, natively.
async fn scoring(
    state: &AppState,
    src: &Source<'_>,
    spec: &DeploymentSpec,
    model: Option<&ModelRecord>,
    reuse_code: Option<PathBuf>,
    base: &Path,
) -> Result<Scoring, ApiError> {
    if let (Some(c), Some(script)) = (&spec.code, &spec.scoring_script) {
        let code = reuse_code.unwrap_or_else(|| base.join(c));
        if !code.join(script).is_file() {
            return Err(ApiError::spec(
                src.error_near(
                    "scoring_script",
                    Some(script),
                    format!("{} does not exist", code.join(script).display()),
                )
                .hint("scoring_script is relative to code_configuration.code"),
            ));
        }
        return Ok(Scoring {
            code: Some((code, script.clone())),
            mlflow: None,
        });
    }
    let model = model.ok_or_else(|| {
        ApiError::spec(SpecError::new(format!(
            "{}: a deployment without code_configuration needs a model",
            src.name
        )))
    })?;
    let dir = Path::new(&model.path);
    if let Some(folder) = models::mlflow_folder(dir) {
        return Ok(Scoring {
            code: Some(crate::services::mlflow_models::scorer(&state.home).await?),
            mlflow: Some(folder),
        });
    }
    let problem = if model.model_type == ModelType::MlflowModel {
        src.error_near(
            "model",
            None,
            format!(
                "the MLflow model at {} holds no MLmodel file",
                dir.display()
            ),
        )
        .hint("deploy the folder mlflow.save_model wrote, or give a code_configuration")
    } else if !has_onnx(dir) {
        src.error_near(
            "model",
            None,
            format!(
                "the model at {} holds no .onnx file, and the deployment has no code_configuration",
                dir.display()
            ),
        )
        .hint("give code_configuration.code and scoring_script, or deploy an MLflow or ONNX model")
    } else {
        return Ok(Scoring {
            code: None,
            mlflow: None,
        });
    };
    Err(ApiError::spec(problem))
}

/// The instance type the deployment names, from its endpoint's cluster or the workspace, with
/// the deployment's own resources within its limits.
async fn instance_type_for(
    state: &AppState,
    src: &Source<'_>,
    spec: &DeploymentSpec,
    ep: &EndpointRecord,
) -> Result<InstanceType, ApiError> {
    let it_name = spec
        .instance_type
        .clone()
        .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into());
    let on_cluster =
        crate::services::placement::on_cluster(state, ep.spec.compute.as_deref()).await?;
    let found = match (&ep.spec.compute, on_cluster) {
        (Some(compute), true) => {
            crate::services::clusters::instance_type(state, compute, &it_name).await?
        }
        _ => find_instance_type(state, &it_name).await?,
    };
    let instance_type = found.ok_or_else(|| {
        let (what, hint) = if on_cluster {
            (
                " in the endpoint's cluster",
                "apply it to the cluster with `kubectl apply -f instance-types.yaml`",
            )
        } else {
            (
                "",
                "apply it with `berth instance-type apply -f instance-types.yaml`",
            )
        };
        ApiError::spec(
            src.error_near(
                "instance_type",
                Some(&it_name),
                format!("instance type `{it_name}` does not exist{what}"),
            )
            .hint(hint),
        )
    })?;
    if let Some((cpu, mem)) = spec.resource_limits.or(spec.resource_requests)
        && (cpu > instance_type.limits.cpu || mem > instance_type.limits.memory)
    {
        return Err(ApiError::spec(src.error_near("resources", None, format!(
            "the deployment's resources ({} CPU, {}) exceed instance type `{it_name}`'s limits ({} CPU, {})",
            cpu.display_cpu(), mem.display_bytes(), instance_type.limits.cpu.display_cpu(), instance_type.limits.memory.display_bytes()
        ))));
    }
    Ok(instance_type)
}

/// The deployment's environment; an MLflow model served without code brings its own when the
/// deployment names no Python environment.
async fn environment_for(
    state: &AppState,
    src: &Source<'_>,
    spec: &DeploymentSpec,
    base: &Path,
    mlflow: Option<&Path>,
) -> Result<Option<ResolvedEnvironment>, ApiError> {
    let environment =
        crate::services::environments::resolve(state, src, spec.environment.as_ref(), base).await?;
    match mlflow {
        Some(folder) if environment.as_ref().is_none_or(|e| e.python.is_none()) => {
            let image = environment.and_then(|e| e.image);
            crate::services::mlflow_models::environment(folder, image)
                .map(Some)
                .map_err(ApiError::spec)
        }
        _ => Ok(environment),
    }
}

/// The model version a deployment serves: a registered one, or its inline `path` copied in
/// as an anonymous version.
async fn resolve_model(
    state: &AppState,
    src: &Source<'_>,
    model: Option<&ModelRef>,
    base: &std::path::Path,
) -> Result<Option<ModelRecord>, ApiError> {
    match model {
        Some(ModelRef::Registered { name, version }) => {
            let r = AssetRef {
                name: name.clone(),
                version: match version.as_str() {
                    "latest" => AssetVersion::Latest,
                    v => AssetVersion::Exact(v.to_string()),
                },
                from_azure: false,
            };
            models::resolve(state, &r).await.map(Some).map_err(|e| {
                ApiError::spec(src.error_near("model", None, e.to_string()).hint(format!(
                    "register it with `berth model create --name {name} --path <folder>`"
                )))
            })
        }
        Some(ModelRef::Path { path, model_type }) => {
            let p = base.join(path);
            if !p.exists() {
                return Err(ApiError::spec(src.error_near(
                    "path",
                    Some(path),
                    format!("model path {} does not exist", p.display()),
                )));
            }
            models::register_inline(state, &p, *model_type)
                .await
                .map(Some)
        }
        None => Ok(None),
    }
}

/// True when the model folder holds a `.onnx` file, at its top or in a registered folder.
fn has_onnx(dir: &std::path::Path) -> bool {
    let onnx_in = |d: &std::path::Path| {
        std::fs::read_dir(d).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "onnx"))
        })
    };
    onnx_in(dir)
        || std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.path().is_dir() && onnx_in(&e.path()))
        })
}

/// Snapshots the code into the revision's folder and builds the record.
#[allow(clippy::too_many_arguments)]
async fn snapshot_record(
    state: &AppState,
    endpoint: &str,
    spec: DeploymentSpec,
    model_dir: Option<PathBuf>,
    code_script: Option<(PathBuf, String)>,
    instance_type: berth_core::spec::instance_type::InstanceType,
    revision: u32,
    initial: DeploymentState,
) -> Result<(DeploymentRecord, Staged), ApiError> {
    let dir = state
        .home
        .join("deployments")
        .join(endpoint)
        .join(&spec.name);
    let rev = RevisionDir::of(&dir, revision);
    // Snapshotted aside and moved into place only once the revision is claimed in the store
    // (`Staged::commit`): a submission that loses a race touches nothing that serves.
    let staging = dir.join(format!(".rev-{revision}.{:016x}", rand::random::<u64>()));
    let (d, note) = (staging.join("code"), staging.join("model-dir"));
    let src = code_script.as_ref().map(|(c, _)| c.clone());
    let model = model_dir.clone();
    tokio::task::spawn_blocking(move || {
        match src {
            Some(c) => copy_tree(&c, &d).map(|copied| {
                for l in copied.left_out {
                    tracing::warn!("deployment code snapshot {l}");
                }
            }),
            None => std::fs::create_dir_all(&d),
        }?;
        match model {
            Some(m) => std::fs::write(note, m.to_string_lossy().as_bytes()),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("cannot snapshot the code: {e}")))?;
    let record = DeploymentRecord {
        script: code_script
            .map(|(_, script)| rev.code().join(script).to_string_lossy().into_owned()),
        dir: dir.to_string_lossy().into_owned(),
        revision,
        model_dir: model_dir.map(|m| m.to_string_lossy().into_owned()),
        environment: None,
        source: None,
        instance_type,
        state: initial,
        created_at: OffsetDateTime::now_utc(),
        uid: String::new(),
        spec,
    };
    Ok((
        record,
        Staged {
            staging,
            revision: rev.root().to_path_buf(),
        },
    ))
}

/// A revision's snapshot, made aside until the revision is claimed in the store.
#[must_use = "commit the snapshot once the revision is stored, or discard it"]
pub struct Staged {
    staging: PathBuf,
    revision: PathBuf,
}

impl Staged {
    /// Moves the snapshot into the revision's folder (replacing what an earlier deployment of
    /// the same name left there: the name and revision are this submission's now).
    pub async fn commit(self) -> Result<(), ApiError> {
        let _ = tokio::fs::remove_dir_all(&self.revision).await;
        tokio::fs::rename(&self.staging, &self.revision)
            .await
            .map_err(|e| {
                ApiError::Internal(format!(
                    "cannot move the snapshot into {}: {e}",
                    self.revision.display()
                ))
            })
    }

    /// Removes the snapshot of a revision that was not stored.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_dir_all(&self.staging).await;
    }
}
