//! Job submission and views: parse the file, resolve every reference against the workspace,
//! snapshot the code, and hand the job to the manager, storing nothing half-way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::api::{JobCreateRequest, JobView};
use berth_core::job::{JobRecord, JobState, ResolvedInput, ResolvedOutput};
use berth_core::names::validate_name;
use berth_core::spec::asset::{AssetRef, DataRecord};
use berth_core::spec::compute::{ComputeKind, ComputeSpec, LOCAL_COMPUTE, effective_compute};
use berth_core::spec::data::{DataPath, DataType, JobInput};
use berth_core::spec::instance_type::{DEFAULT_INSTANCE_TYPE, InstanceType};
use berth_core::spec::job::JobSpec;
use berth_core::yaml::{Source, SpecError};
use berth_scheduler::workdir::{JobDir, copy_tree};
use berth_store::{Kind, Stored};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::error::ApiError;
use crate::services::resources::{
    datastore_root, find_compute, find_instance_type, resolve_datastore,
};
use crate::services::versions;

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "gentle", "happy", "keen", "lively", "mellow", "nimble", "quiet",
    "sincere", "steady", "swift", "tidy", "witty", "zesty",
];
const NOUNS: [&str; 16] = [
    "badger", "comet", "falcon", "garden", "harbor", "island", "lantern", "maple", "otter",
    "pepper", "river", "sparrow", "tiger", "tulip", "walrus", "yarrow",
];

/// A fresh job name in Azure ML's style: `sincere_tiger_k3v9x2qa`.
pub fn generate_name() -> String {
    let a = ADJECTIVES[rand::random_range(0..ADJECTIVES.len())];
    let n = NOUNS[rand::random_range(0..NOUNS.len())];
    let suffix: String = (0..8)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36)]))
        .collect();
    format!("{a}_{n}_{suffix}")
}

/// Validates, resolves and submits a job file.
pub async fn create(state: &AppState, req: JobCreateRequest) -> Result<JobView, ApiError> {
    match berth_core::spec::job::job_type(&req.yaml).as_deref() {
        Some("sweep") => return crate::services::sweeps::create(state, req).await,
        Some("pipeline") => return crate::services::pipelines::create(state, req).await,
        _ => {}
    }
    let src = Source::new(&req.file, &req.yaml);
    let mut spec = berth_core::overrides::parse_with_sets(&src, &req.set, JobSpec::parse)
        .map_err(ApiError::spec)?;
    spec.check_references()
        .map_err(|m| ApiError::spec(src.error_near("command", None, m)))?;
    let base_dir = PathBuf::from(&req.base_dir);
    if !base_dir.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "base_dir `{}` must be an absolute path",
            req.base_dir
        )));
    }
    let name = free_name(state, spec.name.clone()).await?;
    spec.name = Some(name.clone());
    let compute_name = spec
        .compute
        .as_deref()
        .map_or_else(|| LOCAL_COMPUTE.to_string(), effective_compute);
    let compute = find_compute(state, &compute_name).await?.ok_or_else(|| {
        ApiError::spec(
            src.error_near("compute", None, format!("compute `{compute_name}` does not exist"))
                .hint(format!("attach it with `berth compute attach --type local --name {compute_name}`, or see `berth compute list`")),
        )
    })?;
    let instance_type = instance_type_for(state, &src, &spec, &compute).await?;
    let environment =
        crate::services::environments::resolve(state, &src, spec.environment.as_ref(), &base_dir)
            .await?;
    let workdir = state.home.join("jobs").join(&name);
    let inputs = resolve_inputs(state, &src, &spec, &base_dir).await?;
    let outputs = resolve_outputs(state, &src, &spec, &workdir).await?;
    let code = code_of(&src, &spec, &base_dir)?;
    let mut record = JobRecord {
        name: name.clone(),
        display_name: spec.display_name.clone().unwrap_or_else(|| name.clone()),
        experiment_name: spec
            .experiment_name
            .clone()
            .unwrap_or_else(|| experiment_from(&base_dir)),
        compute: compute_name,
        instance_type,
        base_dir: req.base_dir.clone(),
        workdir: workdir.to_string_lossy().into_owned(),
        inputs,
        outputs,
        created_at: OffsetDateTime::now_utc(),
        state: JobState::NotStarted,
        upload_token: (compute.kind == ComputeKind::Kubernetes).then(upload_token),
        environment,
        tracking: None,
        parent_job_name: req.parent_job_name.clone(),
        sweep: None,
        pipeline: None,
        spec,
        archived: false,
        pruned: false,
        cancel_requested: false,
    };
    snapshot(&workdir, code).await?;
    let tracking = match crate::mlflow::jobs::open_run(state, &record).await {
        Ok(t) => t,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&workdir).await;
            return Err(ApiError::Internal(format!(
                "cannot make the job's MLflow run: {e}"
            )));
        }
    };
    record.tracking = Some(tracking);
    match state.jobs.submit(record).await {
        Ok(stored) => Ok(view(state, &stored)),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&workdir).await;
            let _ = state.store.purge_run(&name).await;
            Err(e.into())
        }
    }
}

/// The job's name: the one given, which must be free, or a generated one.
pub(crate) async fn free_name(state: &AppState, given: Option<String>) -> Result<String, ApiError> {
    let name = given.unwrap_or_else(generate_name);
    validate_name("job", &name).map_err(|m| ApiError::spec(SpecError::new(m)))?;
    if state
        .store
        .get::<serde_json::Value>(Kind::Job, &name)
        .await?
        .is_some()
    {
        return Err(ApiError::AlreadyExists {
            kind: "job",
            name,
            hint: Some(
                "pick another name with --name, or leave the name out to get a generated one"
                    .into(),
            ),
        });
    }
    Ok(name)
}

/// The instance type the job asks for: the cluster's for a Kubernetes compute, else the
/// workspace's.
async fn instance_type_for(
    state: &AppState,
    src: &Source<'_>,
    spec: &JobSpec,
    compute: &ComputeSpec,
) -> Result<InstanceType, ApiError> {
    let it_name = spec
        .instance_type
        .clone()
        .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_string());
    if compute.kind == ComputeKind::Kubernetes {
        let found =
            crate::services::clusters::instance_type(state, &compute.name, &it_name).await?;
        return found.ok_or_else(|| {
            ApiError::spec(
                src.error_near("instance_type", Some(&it_name), format!("instance type `{it_name}` does not exist in the cluster of compute `{}`", compute.name))
                    .hint("apply it to the cluster with `kubectl apply -f instance-types.yaml`; `berth compute show --name <compute>` lists the cluster's instance types"),
            )
        });
    }
    find_instance_type(state, &it_name).await?.ok_or_else(|| {
        ApiError::spec(
            src.error_near("instance_type", Some(&it_name), format!("instance type `{it_name}` does not exist"))
                .hint("apply it with `berth instance-type apply -f instance-types.yaml`; `berth instance-type list` shows what there is"),
        )
    })
}

/// The `code` folder or file, which must exist beside the job file.
fn code_of(src: &Source<'_>, spec: &JobSpec, base_dir: &Path) -> Result<Option<PathBuf>, ApiError> {
    let Some(c) = &spec.code else {
        return Ok(None);
    };
    let p = base_dir.join(c);
    if !p.exists() {
        return Err(ApiError::spec(
            src.error_near(
                "code",
                Some(c),
                format!(
                    "code path `{c}` does not exist (looked for {})",
                    p.display()
                ),
            )
            .hint("`code` is relative to the job file's folder"),
        ));
    }
    Ok(Some(p))
}

/// The token a Kubernetes job's pod uploads its outputs and fetches its files with.
fn upload_token() -> String {
    rand::random::<[u8; 24]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The experiment name Azure ML derives from the submitting folder.
pub(crate) fn experiment_from(base_dir: &Path) -> String {
    let raw = base_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        clean
    } else {
        "default".into()
    }
}

/// Claims the job's folder (made here, exclusively: a job of the same name submitted at the
/// same moment gets AlreadyExists and touches nothing on disk) and copies the code into it.
async fn snapshot(workdir: &Path, code: Option<PathBuf>) -> Result<(), ApiError> {
    let dir = JobDir::new(workdir);
    if let Err(e) = tokio::fs::create_dir(workdir).await {
        let name = workdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
            ApiError::AlreadyExists {
                kind: "job",
                name,
                hint: Some(
                    "pick another name with --name, or leave the name out to get a generated one"
                        .into(),
                ),
            }
        } else {
            ApiError::Internal(format!("cannot make {}: {e}", workdir.display()))
        });
    }
    let code_dst = dir.code();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&code_dst)?;
        let mut left_out = Vec::new();
        if let Some(src) = code {
            if src.is_dir() {
                left_out = copy_tree(&src, &code_dst)?.left_out;
            } else if let Some(file) = src.file_name() {
                std::fs::copy(&src, code_dst.join(file))?;
            }
        }
        std::fs::create_dir_all(dir.log().parent().unwrap_or(dir.root()))?;
        // What the snapshot left out is the first thing in the job's log.
        let notes: String = left_out
            .iter()
            .map(|l| format!("berth: code snapshot {l}\n"))
            .collect();
        if !notes.is_empty() {
            std::fs::write(dir.log(), notes)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        // The folder is this submission's own: nothing of it is kept.
        let _ = std::fs::remove_dir_all(workdir);
        ApiError::Internal(format!(
            "cannot snapshot the code into {}: {e}",
            workdir.display()
        ))
    })
}

async fn resolve_inputs(
    state: &AppState,
    src: &Source<'_>,
    spec: &JobSpec,
    base: &Path,
) -> Result<BTreeMap<String, ResolvedInput>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, input) in &spec.inputs {
        let resolved = match input {
            JobInput::Literal { value } => ResolvedInput::Literal {
                value: value.clone(),
            },
            JobInput::Data {
                data_type,
                path,
                mode,
            } => {
                let asset;
                let path = match path {
                    DataPath::Asset { reference } => {
                        asset = asset_input(state, src, name, reference, *data_type).await?;
                        &asset
                    }
                    p => p,
                };
                let local = match path {
                    DataPath::Asset { .. } => unreachable!("resolved above"),
                    DataPath::Url { url } => {
                        out.insert(
                            name.clone(),
                            ResolvedInput::Url {
                                url: url.clone(),
                                data_type: *data_type,
                                mode: *mode,
                            },
                        );
                        continue;
                    }
                    DataPath::Local { path } => base.join(path),
                    DataPath::Datastore { datastore, path } => {
                        resolve_datastore(state, src, datastore, datastore, path).await?
                    }
                };
                let written = match path {
                    DataPath::Local { path } => path.clone(),
                    DataPath::Datastore { datastore, .. } => datastore.clone(),
                    DataPath::Url { url } | DataPath::Asset { reference: url } => url.clone(),
                };
                check_exists(src, name, &written, &local, *data_type)?;
                ResolvedInput::Path {
                    path: local.to_string_lossy().into_owned(),
                    data_type: *data_type,
                    mode: *mode,
                }
            }
        };
        out.insert(name.clone(), resolved);
    }
    Ok(out)
}

/// What a registered input names: a model version's folder for model inputs, else a data
/// asset version's copy, datastore path or URL.
async fn asset_input(
    state: &AppState,
    src: &Source<'_>,
    input: &str,
    reference: &str,
    data_type: DataType,
) -> Result<DataPath, ApiError> {
    let at = |m: String| src.error_near("path", Some(reference), m);
    let r = AssetRef::parse(reference).map_err(|m| ApiError::spec(at(m)))?;
    if matches!(data_type, DataType::CustomModel | DataType::MlflowModel) {
        let model = crate::services::models::resolve(state, &r)
            .await
            .map_err(|e| ApiError::spec(at(format!("input `{input}`: {e}"))))?;
        return Ok(DataPath::Local { path: model.path });
    }
    match crate::services::data::resolve(state, &r).await? {
        Some(d) => Ok(d.location),
        None => Err(ApiError::spec(
            at(format!(
                "input `{input}`: data asset `{}` does not exist",
                versions::describe(&r.name, &r.version)
            ))
            .hint(versions::register_hint::<DataRecord>(&r.name)),
        )),
    }
}

fn check_exists(
    src: &Source<'_>,
    name: &str,
    written: &str,
    path: &Path,
    data_type: DataType,
) -> Result<(), ApiError> {
    let err = |m: String| ApiError::spec(src.error_near("path", Some(written), m));
    match std::fs::metadata(path) {
        Err(_) => Err(err(format!(
            "input `{name}`: {} does not exist",
            path.display()
        ))),
        Ok(m) if data_type == DataType::UriFile && m.is_dir() => Err(err(format!(
            "input `{name}` is `type: uri_file` but {} is a folder; use `type: uri_folder`",
            path.display()
        ))),
        Ok(m) if data_type == DataType::UriFolder && !m.is_dir() => Err(err(format!(
            "input `{name}` is `type: uri_folder` but {} is a file; use `type: uri_file`",
            path.display()
        ))),
        Ok(_) => Ok(()),
    }
}

async fn resolve_outputs(
    state: &AppState,
    src: &Source<'_>,
    spec: &JobSpec,
    workdir: &Path,
) -> Result<BTreeMap<String, ResolvedOutput>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, o) in &spec.outputs {
        let path = match &o.path {
            Some(DataPath::Datastore { datastore, path }) => {
                let root = datastore_root(state, datastore).await?.ok_or_else(|| {
                    ApiError::spec(src.error_near(
                        "path",
                        Some(datastore),
                        format!("output `{name}`: datastore `{datastore}` does not exist"),
                    ))
                })?;
                root.join(path)
            }
            _ if o.data_type == DataType::UriFile => {
                JobDir::new(workdir).outputs().join(name).join(name)
            }
            _ => JobDir::new(workdir).outputs().join(name),
        };
        out.insert(
            name.clone(),
            ResolvedOutput {
                path: path.to_string_lossy().into_owned(),
                data_type: o.data_type,
            },
        );
    }
    Ok(out)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// The API's view of a stored job, with the live queue reason.
pub fn view(state: &AppState, stored: &Stored<JobRecord>) -> JobView {
    let job = &stored.value;
    let (status_message, failure_kind, exit_code) = match &job.state {
        JobState::Queued => (state.jobs.queue_reason(&job.name), None, None),
        JobState::Preparing { note, .. } | JobState::Running { note, .. } => {
            (note.clone(), None, None)
        }
        JobState::Failed {
            kind,
            message,
            exit_code,
            ..
        } => (Some(message.clone()), Some(*kind), *exit_code),
        JobState::Completed { .. } => (None, None, Some(0)),
        JobState::Finalizing { exit_code, .. } => (None, None, Some(*exit_code)),
        _ => (None, None, None),
    };
    let gpus = match &job.state {
        JobState::Preparing { gpus, .. } | JobState::Running { gpus, .. } => gpus.clone(),
        _ => Vec::new(),
    };
    let spec = &job.spec;
    JobView {
        name: job.name.clone(),
        job_type: if job.sweep.is_some() {
            "sweep"
        } else if job.pipeline.is_some() {
            "pipeline"
        } else {
            "command"
        }
        .into(),
        status: job.state.status(),
        status_message,
        failure_kind,
        exit_code,
        display_name: job.display_name.clone(),
        experiment_name: job.experiment_name.clone(),
        description: spec.description.clone(),
        tags: spec.tags.clone(),
        compute: format!("azureml:{}", job.compute),
        resources: BTreeMap::from([("instance_type".to_string(), job.instance_type.name.clone())]),
        limits: spec
            .timeout_seconds
            .map(|t| BTreeMap::from([("timeout".to_string(), t)]))
            .unwrap_or_default(),
        command: spec.command.clone(),
        code: spec.code.clone(),
        environment: spec
            .environment
            .as_ref()
            .and_then(|e| serde_json::to_value(e).ok()),
        environment_variables: spec.environment_variables.clone(),
        inputs: serde_json::to_value(&job.inputs).unwrap_or_default(),
        outputs: serde_json::to_value(&job.outputs).unwrap_or_default(),
        creation_context: BTreeMap::from([("created_at".to_string(), rfc3339(job.created_at))]),
        start_time: job.state.started_at().map(rfc3339),
        end_time: job.state.ended_at().map(rfc3339),
        metrics: Default::default(),
        params: Default::default(),
        parent_job_name: job.parent_job_name.clone(),
        sweep: job.sweep.as_ref().map(crate::services::sweeps::summary),
        pipeline: job
            .pipeline
            .as_ref()
            .map(crate::services::pipelines::summary),
        archived: job.archived,
        pruned: job.pruned,
        gpus,
        resource_version: stored.resource_version,
    }
}

pub use crate::services::records::job as get;

pub use crate::services::job_outputs::{OutputRoot, output_path, output_root};

/// Where an uploaded output file of a running Kubernetes job goes, after checking the job's
/// upload token, that the job is unfinished, and that the path stays inside the output.
pub async fn upload_target(
    state: &AppState,
    name: &str,
    output: &str,
    path: &str,
    token: &str,
) -> Result<PathBuf, ApiError> {
    let job = get(state, name).await?;
    let expected = job.value.upload_token.as_deref().unwrap_or_default();
    if expected.is_empty()
        || !berth_core::secret::constant_time_eq(token.as_bytes(), expected.as_bytes())
    {
        return Err(ApiError::Unauthorized(format!(
            "this is not job `{name}`'s upload token"
        )));
    }
    if job.value.state.status().is_terminal() {
        return Err(ApiError::Conflict {
            message: format!("job `{name}` has finished; its outputs can no longer change"),
            hint: None,
        });
    }
    let root = output_root(state, name, output).await?;
    let Some(rel) = berth_core::names::inside_path(path).filter(|rel| root.holds(rel)) else {
        return Err(ApiError::BadRequest(format!(
            "`{path}` is not a path inside the output"
        )));
    };
    // Folders are made one by one and a link on the way is refused: the file lands inside.
    let (base, rel) = (root.root, rel.to_path_buf());
    tokio::task::spawn_blocking(move || berth_scheduler::tree::writable_inside(&base, &rel))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::AlreadyExists => {
                ApiError::BadRequest(format!("cannot upload `{path}`: {e}"))
            }
            _ => ApiError::Internal(format!("cannot upload `{path}`: {e}")),
        })
}

pub use crate::services::job_control::{cancel, set_archived};
