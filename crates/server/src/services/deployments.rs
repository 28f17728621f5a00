//! Online deployments: validate, snapshot the code, start `berth runtime` replicas on the local
//! compute (or hand the revision to `cluster_deployments` when the endpoint is on a cluster),
//! and track `Creating → Succeeded | Failed` with the reason.

use std::path::PathBuf;

use berth_core::serving::{
    DeploymentRecord, DeploymentSource, DeploymentState, ModelRecord, deployment_key,
};
use berth_core::spec::asset::{AssetRef, AssetVersion, ModelType};
use berth_core::spec::deployment::{DeploymentSpec, ModelRef};
use berth_core::spec::instance_type::DEFAULT_INSTANCE_TYPE;
use berth_core::yaml::{Source, SpecError};
use berth_scheduler::serving::Placement;
use berth_scheduler::workdir::{RevisionDir, copy_tree};
use berth_store::{Kind, StoreError, Stored};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;
use crate::services::models;
use crate::services::records;
use crate::services::resources::find_instance_type;
use crate::services::routes::refresh_routes;

/// `POST /api/endpoints/{endpoint}/deployments` and `PUT .../{deployment}`.
#[derive(Debug, Deserialize)]
pub struct DeploymentCreate {
    /// The file name, for errors.
    #[serde(default)]
    pub file: String,
    /// The YAML text; empty for an update that only sets fields of the current revision's file.
    #[serde(default)]
    pub yaml: String,
    /// The folder of the file (absolute).
    #[serde(default)]
    pub base_dir: String,
    /// `--set path=value` overrides.
    #[serde(default)]
    pub set: Vec<String>,
    /// Send all traffic to it once it is ready.
    #[serde(default)]
    pub all_traffic: bool,
}

pub use crate::services::records::deployment as get;

/// Validates a deployment file and starts its replicas; returns while it is `Creating`.
/// Validates a deployment file against the workspace and snapshots its code as `revision`
/// (1 for a new deployment; for an update, `current` is what serves now).
async fn prepare(
    state: &AppState,
    endpoint: &str,
    req: &DeploymentCreate,
    current: Option<&DeploymentRecord>,
) -> Result<DeploymentRecord, ApiError> {
    // An update with no file starts from the current revision's file and code.
    let (source, reuse_code) = match current.and_then(|c| c.source.clone().map(|s| (c, s))) {
        Some((c, s)) if req.yaml.is_empty() => (s, Some(c.revision_dir().join("code"))),
        _ if req.yaml.is_empty() => {
            return Err(ApiError::BadRequest(
                "give the deployment file (--file): there is no earlier file to apply --set to"
                    .into(),
            ));
        }
        _ => (
            DeploymentSource {
                file: req.file.clone(),
                yaml: req.yaml.clone(),
                base_dir: req.base_dir.clone(),
            },
            None,
        ),
    };
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
    let key = deployment_key(endpoint, &spec.name);
    if current.is_none()
        && let Ok(existing) = get(state, endpoint, &spec.name).await
    {
        let busy = matches!(
            existing.value.state,
            DeploymentState::Creating | DeploymentState::Deleting
        );
        return Err(if busy {
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
        });
    }
    let base = PathBuf::from(&source.base_dir);
    let model = resolve_model(state, &src, spec.model.as_ref(), &base).await?;
    let model_dir = model.as_ref().map(|m| PathBuf::from(&m.path));
    // With a scoring script: Python workers. Without one: an MLflow model with Berth's scorer,
    // or the model's .onnx file, natively.
    let mut mlflow_folder = None;
    let code_script = match (&spec.code, &spec.scoring_script) {
        (Some(c), Some(script)) => {
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
            Some((code, script.clone()))
        }
        _ => {
            let dir = model_dir.as_ref().ok_or_else(|| {
                ApiError::spec(SpecError::new(format!(
                    "{}: a deployment without code_configuration needs a model",
                    source.file
                )))
            })?;
            if let Some(folder) = models::mlflow_folder(dir) {
                mlflow_folder = Some(folder);
                Some(crate::services::mlflow_models::scorer(&state.home).await?)
            } else if model
                .as_ref()
                .is_some_and(|m| m.model_type == ModelType::MlflowModel)
            {
                return Err(ApiError::spec(
                    src.error_near(
                        "model",
                        None,
                        format!(
                            "the MLflow model at {} holds no MLmodel file",
                            dir.display()
                        ),
                    )
                    .hint(
                        "deploy the folder mlflow.save_model wrote, or give a code_configuration",
                    ),
                ));
            } else if !has_onnx(dir) {
                return Err(ApiError::spec(
                    src.error_near("model", None, format!("the model at {} holds no .onnx file, and the deployment has no code_configuration", dir.display()))
                        .hint("give code_configuration.code and scoring_script, or deploy an MLflow or ONNX model"),
                ));
            } else {
                None
            }
        }
    };
    let it_name = spec
        .instance_type
        .clone()
        .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into());
    let on_cluster =
        crate::services::placement::on_cluster(state, ep.value.spec.compute.as_deref()).await?;
    let found = match (&ep.value.spec.compute, on_cluster) {
        (Some(compute), true) => {
            crate::services::clusters::instance_type(state, compute, &it_name).await?
        }
        _ => find_instance_type(state, &it_name).await?,
    };
    let instance_type = found.ok_or_else(|| {
        let (what, hint) = if on_cluster {
            (
                "in the endpoint's cluster",
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
                format!("instance type `{it_name}` does not exist {what}")
                    .trim_end()
                    .to_string(),
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
    let mut environment =
        crate::services::environments::resolve(state, &src, spec.environment.as_ref(), &base)
            .await?;
    if let Some(folder) = &mlflow_folder
        && environment.as_ref().is_none_or(|e| e.python.is_none())
    {
        let image = environment.and_then(|e| e.image);
        environment = Some(
            crate::services::mlflow_models::environment(folder, image).map_err(ApiError::spec)?,
        );
    }
    let (revision, initial) = match current {
        Some(c) => (c.revision + 1, DeploymentState::Updating),
        None => (1, DeploymentState::Creating),
    };
    let mut record = snapshot_record(
        state,
        endpoint,
        spec,
        model_dir,
        code_script,
        instance_type,
        revision,
        initial,
    )
    .await?;
    record.environment = environment;
    record.source = Some(applied);
    Ok(record)
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
) -> Result<DeploymentRecord, ApiError> {
    let dir = state
        .home
        .join("deployments")
        .join(endpoint)
        .join(&spec.name);
    let rev = RevisionDir::of(&dir, revision);
    let (d, note) = (rev.code(), rev.model_note());
    let src = code_script.as_ref().map(|(c, _)| c.clone());
    let model = model_dir.clone();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&d);
        match src {
            Some(c) => copy_tree(&c, &d).map(|_| ()),
            None => std::fs::create_dir_all(&d),
        }?;
        match model {
            Some(m) => std::fs::write(note, m.to_string_lossy().as_bytes()),
            None => std::fs::remove_file(note).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("cannot snapshot the code: {e}")))?;
    Ok(DeploymentRecord {
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
        spec,
    })
}

/// Creates a deployment: validates it, snapshots its code, stores it `Creating` and starts
/// its replicas in the background.
pub async fn create(
    state: &AppState,
    endpoint: &str,
    req: DeploymentCreate,
) -> Result<Stored<DeploymentRecord>, ApiError> {
    let record = prepare(state, endpoint, &req, None).await?;
    let key = deployment_key(endpoint, &record.spec.name);
    let (v, seq) = match state
        .store
        .insert(Kind::Deployment, &key, Some("Creating"), &record)
        .await
    {
        Ok(x) => x,
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(ApiError::Conflict {
                message: format!("deployment `{key}` is being created already"),
                hint: None,
            });
        }
        Err(e) => return Err(e.into()),
    };
    start(state, &record, req.all_traffic).await;
    Ok(Stored {
        value: record,
        resource_version: v,
        seq,
    })
}

/// Hands the stored revision to the serving controller, which starts it and records how it
/// goes; a revision that cannot even be planned fails at once.
async fn start(state: &AppState, d: &DeploymentRecord, all_traffic: bool) {
    match crate::services::placement::plan(state, d).await {
        Ok(plan) => state.serving.apply(plan, all_traffic).await,
        Err(e) => {
            let key = deployment_key(&d.spec.endpoint_name, &d.spec.name);
            tracing::warn!(deployment = %key, error = %e, "cannot plan the deployment");
        }
    }
}

/// Updates a deployment with no unavailability: the new revision's replicas start beside the
/// serving ones and take over when all are ready; if they fail, the old ones keep serving.
pub async fn update(
    state: &AppState,
    endpoint: &str,
    name: &str,
    req: DeploymentCreate,
) -> Result<Stored<DeploymentRecord>, ApiError> {
    let cur = get(state, endpoint, name).await?;
    let key = deployment_key(endpoint, name);
    if matches!(
        cur.value.state,
        DeploymentState::Creating | DeploymentState::Updating | DeploymentState::Deleting
    ) {
        return Err(ApiError::Conflict {
            message: format!("deployment `{key}` is {} already", cur.value.state.name()),
            hint: Some("wait for it to finish, then update again".into()),
        });
    }
    let record = prepare(state, endpoint, &req, Some(&cur.value)).await?;
    if record.spec.name != name {
        return Err(ApiError::BadRequest(format!(
            "the file describes deployment `{}`, not `{name}`",
            record.spec.name
        )));
    }
    let v = state
        .store
        .update(
            Kind::Deployment,
            &key,
            cur.resource_version,
            Some("Updating"),
            &record,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::Conflict {
                message: format!(
                    "deployment `{key}` changed while updating; another update is in progress"
                ),
                hint: None,
            },
            other => other.into(),
        })?;
    start(state, &record, false).await;
    Ok(Stored {
        value: record,
        resource_version: v,
        seq: cur.seq,
    })
}

/// The last `lines` lines of each replica's log.
pub async fn logs(
    state: &AppState,
    endpoint: &str,
    name: &str,
    lines: usize,
) -> Result<String, ApiError> {
    let d = get(state, endpoint, name).await?;
    let plan = crate::services::placement::plan(state, &d.value).await?;
    Ok(state.serving.logs(&plan, lines).await?)
}

/// Stops the replicas and forgets the deployment. A deployment that still gets traffic is
/// refused unless its endpoint is being deleted with it (`with_endpoint`).
pub async fn delete(
    state: &AppState,
    endpoint: &str,
    name: &str,
    with_endpoint: bool,
) -> Result<(), ApiError> {
    get(state, endpoint, name).await?;
    if !with_endpoint
        && let Ok(ep) = records::endpoint(state, endpoint).await
        && ep.value.spec.traffic.weight(name) > 0
    {
        return Err(ApiError::Conflict {
            message: format!(
                "deployment `{name}` still gets {}% of endpoint `{endpoint}`'s traffic",
                ep.value.spec.traffic.weight(name)
            ),
            hint: Some(format!(
                "move its traffic first: berth online-endpoint update --name {endpoint} --traffic \"<other>=100\""
            )),
        });
    }
    let key = deployment_key(endpoint, name);
    let d = get(state, endpoint, name).await?;
    let plan = crate::services::placement::plan(state, &d.value).await?;
    state.serving.delete(&plan).await?;
    state.store.delete(Kind::Deployment, &key).await?;
    refresh_routes(state).await;
    Ok(())
}

/// Starts the replicas of every deployment that was up when the server stopped. Re-applying
/// a cluster deployment is idempotent: the controller adopts what runs there.
pub async fn recover(state: &AppState) {
    let Ok(all) = state.store.list::<DeploymentRecord>(Kind::Deployment).await else {
        return;
    };
    for d in all {
        let d = d.value;
        let plan = match crate::services::placement::plan(state, &d).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(deployment = %deployment_key(&d.spec.endpoint_name, &d.spec.name), error = %e, "cannot recover the deployment");
                continue;
            }
        };
        let wanted = if matches!(plan.placement, Placement::Local) {
            matches!(
                d.state,
                DeploymentState::Succeeded | DeploymentState::Creating | DeploymentState::Updating
            )
        } else {
            d.state != DeploymentState::Deleting
        };
        if wanted {
            state.serving.apply(plan, false).await;
        }
    }
}
