//! Instance types, computes and datastores: the workspace resources jobs refer to.

use std::path::PathBuf;

use berth_core::api::{ApplyRequest, ComputeView, DatastoreView, InstanceTypeView, Versioned};
use berth_core::spec::compute::{ComputeKind, ComputeSpec, LOCAL_COMPUTE};
use berth_core::spec::datastore::{DatastoreLocation, DatastoreSpec};
use berth_core::spec::instance_type::{DEFAULT_INSTANCE_TYPE, InstanceType};
use berth_core::yaml::Source;
use berth_scheduler::manager::LOCAL_POOL;
use berth_store::{Kind, Store};

use crate::AppState;
use crate::error::ApiError;

/// Applies every InstanceType in a file, all or nothing.
pub async fn apply_instance_types(
    state: &AppState,
    req: ApplyRequest,
) -> Result<Vec<InstanceTypeView>, ApiError> {
    let types =
        InstanceType::parse_file(&Source::new(&req.file, &req.yaml)).map_err(ApiError::spec)?;
    let mut tx = state.store.begin().await?;
    for t in &types {
        state
            .store
            .upsert_in(&mut tx, Kind::InstanceType, &t.name, t)
            .await?;
    }
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state.store.changed(Kind::InstanceType);
    let mut out = Vec::new();
    for t in &types {
        if let Some(v) = get_instance_type(state, &t.name).await? {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every instance type, with the built-in default unless it was overridden.
pub async fn list_instance_types(state: &AppState) -> Result<Vec<InstanceTypeView>, ApiError> {
    let stored = state.store.list::<InstanceType>(Kind::InstanceType).await?;
    let mut out: Vec<InstanceTypeView> = stored
        .into_iter()
        .map(|s| Versioned {
            spec: s.value,
            resource_version: s.resource_version,
        })
        .collect();
    for size in berth_core::spec::azure_sizes::azure_sizes() {
        if !out
            .iter()
            .any(|t| t.spec.name.eq_ignore_ascii_case(&size.name))
        {
            out.push(Versioned {
                spec: size,
                resource_version: 0,
            });
        }
    }
    if !out.iter().any(|t| t.spec.name == DEFAULT_INSTANCE_TYPE) {
        out.insert(
            0,
            Versioned {
                spec: InstanceType::default_type(),
                resource_version: 0,
            },
        );
    }
    Ok(out)
}

/// One instance type (the built-in default included).
pub async fn get_instance_type(
    state: &AppState,
    name: &str,
) -> Result<Option<InstanceTypeView>, ApiError> {
    match state
        .store
        .get::<InstanceType>(Kind::InstanceType, name)
        .await?
    {
        Some(s) => Ok(Some(Versioned {
            spec: s.value,
            resource_version: s.resource_version,
        })),
        None if name == DEFAULT_INSTANCE_TYPE => Ok(Some(Versioned {
            spec: InstanceType::default_type(),
            resource_version: 0,
        })),
        // Azure VM sizes are built in, so Azure's files run as written.
        None => Ok(
            berth_core::spec::azure_sizes::azure_size(name).map(|spec| Versioned {
                spec,
                resource_version: 0,
            }),
        ),
    }
}

/// The instance type a job named, if it exists.
pub async fn find_instance_type(
    state: &AppState,
    name: &str,
) -> Result<Option<InstanceType>, ApiError> {
    Ok(get_instance_type(state, name).await?.map(|v| v.spec))
}

/// Deletes an instance type (the built-in default cannot be deleted, only overridden).
pub async fn delete_instance_type(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.store.delete(Kind::InstanceType, name).await? {
        return Ok(());
    }
    if name == DEFAULT_INSTANCE_TYPE {
        return Err(ApiError::Conflict {
            message: "`defaultinstancetype` is built in and cannot be deleted".into(),
            hint: Some("apply an InstanceType named defaultinstancetype to change it".into()),
        });
    }
    Err(ApiError::NotFound {
        kind: "instance type",
        name: name.into(),
        hint: Some("`berth instance-type list` shows what there is".into()),
    })
}

/// Makes sure the built-in `local` compute exists.
pub async fn ensure_local_compute(store: &Store) -> Result<(), ApiError> {
    let spec = ComputeSpec {
        name: LOCAL_COMPUTE.into(),
        kind: ComputeKind::Local,
        description: Some("this machine".into()),
        capacity: None,
        kubernetes: None,
    };
    match store
        .insert(Kind::Compute, LOCAL_COMPUTE, None, &spec)
        .await
    {
        Ok(_) | Err(berth_store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Attaches a compute; a Kubernetes one only after its cluster passed the checks.
pub async fn attach_compute(
    state: &AppState,
    mut spec: ComputeSpec,
    create_namespace: bool,
) -> Result<ComputeView, ApiError> {
    // The installed server knows where its pods reach it: its own Service, which the extension
    // passes as BERTH_SERVER_URL. A cluster attached by kubeconfig may be another cluster.
    if let Some(k) = spec.kubernetes.as_mut().filter(|k| k.in_cluster) {
        k.server_url = k.server_url.take().or_else(|| {
            std::env::var("BERTH_SERVER_URL")
                .ok()
                .filter(|u| !u.is_empty())
        });
    }
    berth_core::names::validate_name("compute", &spec.name).map_err(ApiError::BadRequest)?;
    if find_compute(state, &spec.name).await?.is_some() {
        return Err(already_attached(&spec.name));
    }
    match (spec.kind, &spec.kubernetes) {
        (ComputeKind::Kubernetes, _) => {
            super::clusters::connect_new(state, &spec, create_namespace).await?;
        }
        (ComputeKind::Local, Some(_)) => {
            return Err(ApiError::BadRequest(
                "--kubeconfig and --in-cluster are for `--type Kubernetes` computes".into(),
            ));
        }
        (ComputeKind::Local, None) => {}
    }
    match state
        .store
        .insert(Kind::Compute, &spec.name, None, &spec)
        .await
    {
        Ok(_) => {}
        Err(berth_store::StoreError::AlreadyExists { .. }) => {
            return Err(already_attached(&spec.name));
        }
        Err(e) => {
            super::clusters::forget(state, &spec.name);
            return Err(e.into());
        }
    }
    get_compute(state, &spec.name).await
}

fn already_attached(name: &str) -> ApiError {
    ApiError::AlreadyExists {
        kind: "compute",
        name: name.to_string(),
        hint: Some(format!(
            "`berth compute show --name {name}` shows it; detach it first to attach it again"
        )),
    }
}

/// The compute a job named, if it exists.
pub async fn find_compute(state: &AppState, name: &str) -> Result<Option<ComputeSpec>, ApiError> {
    Ok(state
        .store
        .get::<ComputeSpec>(Kind::Compute, name)
        .await?
        .map(|s| s.value))
}

async fn compute_view(
    state: &AppState,
    mut spec: ComputeSpec,
    resource_version: i64,
) -> ComputeView {
    if super::clusters::is_kubernetes(&spec) {
        let (capacity, cluster) = super::clusters::describe(state, &spec).await;
        if let Some(k) = &mut spec.kubernetes {
            k.kubeconfig.clear();
        }
        return ComputeView {
            provisioning_state: if cluster.error.is_some() {
                "Failed"
            } else {
                "Succeeded"
            }
            .into(),
            spec,
            capacity,
            // The cluster's scheduler reserves room; Berth does not track it.
            free: capacity,
            gpus: Vec::new(),
            cluster: Some(cluster),
            isolation: Vec::new(),
            resource_version,
        };
    }
    let (capacity, free) = state.jobs.capacity(LOCAL_POOL).unwrap_or_default();
    ComputeView {
        spec,
        provisioning_state: "Succeeded".into(),
        capacity,
        free,
        gpus: state.gpus.to_vec(),
        cluster: None,
        isolation: state.local_isolation.to_vec(),
        resource_version,
    }
}

/// One compute.
pub async fn get_compute(state: &AppState, name: &str) -> Result<ComputeView, ApiError> {
    let s = state
        .store
        .get::<ComputeSpec>(Kind::Compute, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "compute",
            name: name.into(),
            hint: Some(format!(
                "attach it with `berth compute attach --type local --name {name}`"
            )),
        })?;
    Ok(compute_view(state, s.value, s.resource_version).await)
}

/// Every compute.
pub async fn list_computes(state: &AppState) -> Result<Vec<ComputeView>, ApiError> {
    let all = state.store.list::<ComputeSpec>(Kind::Compute).await?;
    let mut out = Vec::with_capacity(all.len());
    for s in all {
        out.push(compute_view(state, s.value, s.resource_version).await);
    }
    Ok(out)
}

/// Detaches a compute; refuses while jobs on it are unfinished, unless `force`.
pub async fn detach_compute(state: &AppState, name: &str, force: bool) -> Result<(), ApiError> {
    get_compute(state, name).await?;
    if name == LOCAL_COMPUTE {
        return Err(ApiError::Conflict {
            message: "the `local` compute is built in and cannot be detached".into(),
            hint: None,
        });
    }
    let serving: Vec<String> = state
        .store
        .list::<berth_core::serving::EndpointRecord>(Kind::Endpoint)
        .await?
        .into_iter()
        .filter(|e| e.value.spec.compute.as_deref() == Some(name))
        .map(|e| e.value.spec.name)
        .collect();
    if !serving.is_empty() {
        return Err(ApiError::Conflict {
            message: format!(
                "compute `{name}` serves online endpoint(s) {}",
                serving.join(", ")
            ),
            hint: Some(
                "delete them first: berth online-endpoint delete --name <endpoint> --yes".into(),
            ),
        });
    }
    let active = state
        .store
        .count_where(
            Kind::Job,
            &berth_core::job::JobStatus::active_names(),
            "compute",
            name,
        )
        .await?;
    if active > 0 && !force {
        return Err(ApiError::Conflict {
            message: format!("compute `{name}` has {active} unfinished job(s)"),
            hint: Some(
                "cancel them first, or pass --force to detach anyway (they are canceled)".into(),
            ),
        });
    }
    if active > 0 {
        for job in state
            .store
            .list_with_status::<berth_core::job::JobRecord>(
                Kind::Job,
                &berth_core::job::JobStatus::active_names(),
            )
            .await?
        {
            if job.value.compute == name {
                let _ = state.jobs.cancel(&job.value.name).await;
            }
        }
    }
    state.store.delete(Kind::Compute, name).await?;
    super::clusters::forget(state, name);
    Ok(())
}

/// Creates a datastore.
pub async fn create_datastore(
    state: &AppState,
    spec: DatastoreSpec,
) -> Result<DatastoreView, ApiError> {
    berth_core::names::validate_name("datastore", &spec.name).map_err(ApiError::BadRequest)?;
    let DatastoreLocation::Local { path } = &spec.location;
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "datastore path `{path}` must be absolute"
        )));
    }
    if !p.is_dir() {
        return Err(ApiError::BadRequest(format!(
            "datastore path {path} is not an existing folder; create it first"
        )));
    }
    match state
        .store
        .insert(Kind::Datastore, &spec.name, None, &spec)
        .await
    {
        Ok((v, _)) => Ok(Versioned {
            spec,
            resource_version: v,
        }),
        Err(berth_store::StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            kind: "datastore",
            name: spec.name,
            hint: Some("`berth datastore show --name <name>` shows it".into()),
        }),
        Err(e) => Err(e.into()),
    }
}

/// One datastore.
pub async fn get_datastore(state: &AppState, name: &str) -> Result<DatastoreView, ApiError> {
    let s = state
        .store
        .get::<DatastoreSpec>(Kind::Datastore, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "datastore",
            name: name.into(),
            hint: Some(format!(
                "create it with `berth datastore create --name {name} --path <folder>`"
            )),
        })?;
    Ok(Versioned {
        spec: s.value,
        resource_version: s.resource_version,
    })
}

/// Every datastore.
pub async fn list_datastores(state: &AppState) -> Result<Vec<DatastoreView>, ApiError> {
    let all = state.store.list::<DatastoreSpec>(Kind::Datastore).await?;
    Ok(all
        .into_iter()
        .map(|s| Versioned {
            spec: s.value,
            resource_version: s.resource_version,
        })
        .collect())
}

/// The folder a datastore stands for, if it exists.
pub async fn datastore_root(state: &AppState, name: &str) -> Result<Option<PathBuf>, ApiError> {
    Ok(state
        .store
        .get::<DatastoreSpec>(Kind::Datastore, name)
        .await?
        .map(|s| match s.value.location {
            DatastoreLocation::Local { path } => PathBuf::from(path),
        }))
}

/// Where `azureml://datastores/<datastore>/paths/<path>` is on this machine.
pub async fn resolve_datastore(
    state: &AppState,
    src: &Source<'_>,
    written: &str,
    datastore: &str,
    path: &str,
) -> Result<PathBuf, ApiError> {
    let root = datastore_root(state, datastore).await?.ok_or_else(|| {
        ApiError::spec(
            src.error_near(
                "path",
                Some(written),
                format!("datastore `{datastore}` does not exist"),
            )
            .hint(format!(
                "create it with `berth datastore create --name {datastore} --path <folder>`"
            )),
        )
    })?;
    Ok(root.join(path))
}
