//! The Kubernetes backend: a job on an attached cluster becomes a ConfigMap and a `batch/v1`
//! Job; its state is read back from the Job and its Pods (level-triggered, so a restarted
//! server simply reads it again); its log is copied from the pods/log API into the job's log
//! file; cancel deletes the Job and its Pods.

pub mod apply;
pub mod cluster;
pub mod delivery;
pub mod error;
pub mod install;
pub mod objects;
pub mod observe;
pub mod orphans;
pub mod serving;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::job::JobRecord;
use futures_util::AsyncReadExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PropagationPolicy};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tracing::warn;

pub use cluster::Cluster;
use cluster::{Clusters, describe};
use error::KubeError;
pub(crate) use objects::base64;
use objects::{JOB_LABEL, object_name};
use observe::{Observed, observe};

use super::{Backend, BackendError, Phase, Progress, Reattach, RunHandle};
use crate::supervisor::{Ending, RunResult};
use crate::workdir::JobDir;

/// How often a running job's Job and Pods are read.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between retries after API errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The field manager of everything Berth applies.
pub const FIELD_MANAGER: &str = "berth";

/// Runs jobs on attached clusters, one client per compute.
pub struct KubernetesBackend {
    clusters: Arc<Clusters>,
    pending: Mutex<HashMap<String, Job>>,
    canceled: Mutex<HashSet<String>>,
}

impl KubernetesBackend {
    /// Runs jobs on the clusters attached in `clusters`.
    pub fn new(clusters: Arc<Clusters>) -> Self {
        KubernetesBackend {
            clusters,
            pending: Mutex::default(),
            canceled: Mutex::default(),
        }
    }

    /// True when `compute` is an attached cluster.
    pub fn serves(&self, compute: &str) -> bool {
        self.clusters.serves(compute)
    }

    /// The cluster behind `compute`.
    pub fn cluster(&self, compute: &str) -> Option<Cluster> {
        self.clusters.get(compute)
    }

    fn for_job(&self, job: &JobRecord) -> Result<Cluster, BackendError> {
        self.cluster(&job.compute)
            .ok_or_else(|| BackendError::NotConnected(job.compute.clone()))
    }

    /// How a job ended whose Kubernetes Job disappeared: canceled, or deleted by someone else.
    fn gone(&self, job: &JobRecord, cluster: &Cluster) -> RunResult {
        if self.was_canceled(&job.name) {
            return RunResult {
                ending: Ending::Canceled,
                exit_code: None,
                message: "canceled".into(),
            };
        }
        RunResult {
            ending: Ending::Failed,
            exit_code: None,
            message: format!(
                "Kubernetes Job {} was deleted in namespace `{}` by someone other than Berth",
                object_name(&job.name),
                cluster.namespace
            ),
        }
    }

    fn was_canceled(&self, job: &str) -> bool {
        self.canceled.lock().is_ok_and(|c| c.contains(job))
    }
}

/// The Job controller's reason for making no pod, from the Job's events, else `waiting`.
async fn refused_or(events: &Api<Event>, job_events: &ListParams, waiting: Phase) -> Phase {
    match events.list(job_events).await {
        Ok(list) => observe::creation_refused(&list.items)
            .map(Phase::Queued)
            .unwrap_or(waiting),
        Err(_) => waiting,
    }
}

/// Once a job ended: lets the log copy that followed its pod finish, or copies the newest
/// pod's log when none followed it.
async fn finish_logs(
    log_task: Option<tokio::task::JoinHandle<()>>,
    pods: &Api<Pod>,
    pod_list: &[Pod],
    job: &JobRecord,
) {
    match log_task {
        Some(t) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        None => {
            let newest = pod_list
                .iter()
                .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            if let Some(pod) = newest {
                copy_logs(pods.clone(), pod, job.clone(), false).await;
            }
        }
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// How many times an apply is tried when the cluster does not answer (1, 2, 4, 8 s apart).
const APPLY_TRIES: u32 = 5;

/// Server-side applies `obj`, retrying with backoff while the cluster cannot be reached or
/// answers 5xx/429; a refusal (4xx) comes back at once.
pub(crate) async fn apply_retrying<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut delay = Duration::from_secs(1);
    let mut tries = 1;
    loop {
        match api.patch(name, &apply_params(), &Patch::Apply(obj)).await {
            Err(kube::Error::Api(s)) if s.code < 500 && s.code != 429 => {
                return Err(kube::Error::Api(s));
            }
            Err(e) if tries < APPLY_TRIES => {
                warn!(object = name, error = %describe(&e), retry_in = ?delay, "cannot apply; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

async fn append_log(job: &JobRecord, text: &str) {
    let path = JobDir::new(&job.workdir).log();
    if let Some(parent) = path.parent() {
        let _ = tokio::fs::create_dir_all(parent).await;
    }
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        let _ = f.write_all(text.as_bytes()).await;
    }
}

/// The init containers whose logs belong in the job's log: `berth-fetch` (what it fetched),
/// and any that failed (why the command never ran).
fn init_logs(pod: &Pod) -> Vec<String> {
    let failed = |name: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.name == name)
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .any(|t| t.exit_code != 0)
    };
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.name == delivery::FETCH_CONTAINER || failed(&c.name))
        .map(|c| c.name.clone())
        .collect()
}

/// Copies the logs of a pod's init containers named by [`init_logs`], then of its `job`
/// container, into the job's log file, following the latter until it ends.
async fn copy_logs(pods: Api<Pod>, pod: &Pod, job: JobRecord, follow: bool) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    for init in init_logs(pod) {
        copy_log(&pods, &name, &init, &job, false).await;
    }
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.name == "job")
        .filter_map(|c| c.state.as_ref())
        .any(|s| s.running.is_some() || s.terminated.is_some());
    if follow || started {
        copy_log(&pods, &name, "job", &job, follow).await;
    }
}

/// Copies one container's log into the job's log file, following it until the container ends.
async fn copy_log(pods: &Api<Pod>, pod: &str, container: &str, job: &JobRecord, follow: bool) {
    let params = LogParams {
        container: Some(container.into()),
        follow,
        ..LogParams::default()
    };
    let stream = match pods.log_stream(pod, &params).await {
        Ok(s) => s,
        Err(e) => {
            append_log(
                job,
                &format!(
                    "[berth] cannot read the log of pod {pod}, container {container}: {}\n",
                    describe(&e)
                ),
            )
            .await;
            return;
        }
    };
    let mut stream = Box::pin(stream);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => append_log(job, &String::from_utf8_lossy(&buf[..n])).await,
            Err(e) => {
                append_log(job, &format!("[berth] pod {pod}'s log ended: {e}\n")).await;
                break;
            }
        }
    }
}

impl Backend for KubernetesBackend {
    fn queues_itself(&self, job: &JobRecord) -> bool {
        self.serves(&job.compute)
    }

    async fn prepare(&self, job: &JobRecord, _gpus: &[String]) -> Result<(), BackendError> {
        let cluster = self.for_job(job)?;
        self.prepare_objects(job, &cluster)
            .await
            .map_err(|e| BackendError::Prepare(e.to_string()))
    }

    async fn launch(&self, job: &JobRecord) -> Result<RunHandle, BackendError> {
        let cluster = self.for_job(job)?;
        self.create_job(job, &cluster)
            .await
            .map(|()| RunHandle::remote())
            .map_err(|e| BackendError::Launch(e.to_string()))
    }
    async fn wait(&self, job: &JobRecord, _run: RunHandle, progress: Progress) -> RunResult {
        let cluster = match self.for_job(job) {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                return RunResult {
                    ending: Ending::Failed,
                    exit_code: None,
                    message,
                };
            }
        };
        let name = object_name(&job.name);
        let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let selector = ListParams::default().labels(&format!("{JOB_LABEL}={name}"));
        let events: Api<Event> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let job_events = ListParams::default().fields(&format!(
            "involvedObject.kind=Job,involvedObject.name={name}"
        ));
        let mut backoff = POLL;
        let mut last: Option<Phase> = None;
        let mut log_task: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            let read = match jobs.get_opt(&name).await {
                Ok(j) => pods.list(&selector).await.map(|p| (j, p.items)),
                Err(e) => Err(e),
            };
            let (found, pod_list) = match read {
                Ok(r) => r,
                Err(e) => {
                    warn!(job = %job.name, error = %describe(&e), retry_in = ?backoff, "cannot read the job from the cluster");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = POLL;
            let phase = match observe(found.as_ref(), &pod_list) {
                // No pod yet: the Job controller says in an event when it cannot make one
                // (a ResourceQuota, a LimitRange, an admission webhook).
                Observed::Waiting(p) if found.is_some() && pod_list.is_empty() => {
                    refused_or(&events, &job_events, p).await
                }
                Observed::Waiting(p) => p,
                Observed::Running { pod } => {
                    let running = pod_list
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()));
                    if log_task.is_none()
                        && let Some(p) = running.cloned()
                    {
                        let (pods, job) = (pods.clone(), job.clone());
                        log_task = Some(tokio::spawn(async move {
                            copy_logs(pods, &p, job, true).await;
                        }));
                    }
                    Phase::Running
                }
                Observed::Ended(result) => {
                    finish_logs(log_task, &pods, &pod_list, job).await;
                    return result;
                }
                Observed::Gone => {
                    if let Some(t) = log_task {
                        t.abort();
                    }
                    return self.gone(job, &cluster);
                }
            };
            if last.as_ref() != Some(&phase) {
                let _ = progress.send(phase.clone());
                last = Some(phase);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn cancel(&self, job: &JobRecord) {
        if let Ok(mut c) = self.canceled.lock() {
            c.insert(job.name.clone());
        }
        let Ok(cluster) = self.for_job(job) else {
            return;
        };
        let name = object_name(&job.name);
        let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match jobs.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                warn!(job = %job.name, error = %describe(&e), "cannot delete the Kubernetes Job")
            }
        }
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let selector = ListParams::default().labels(&format!("{JOB_LABEL}={name}"));
        if let Err(e) = pods
            .delete_collection(&DeleteParams::default(), &selector)
            .await
        {
            warn!(job = %job.name, error = %describe(&e), "cannot delete the job's pods");
        }
    }

    async fn reattach(&self, job: &JobRecord) -> Reattach {
        let Ok(cluster) = self.for_job(job) else {
            return Reattach::Lost;
        };
        let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        match jobs.get_opt(&object_name(&job.name)).await {
            Ok(None) => Reattach::Lost,
            // Found, or the cluster did not answer: `wait` reads it again (with backoff).
            _ => Reattach::Running(RunHandle::remote()),
        }
    }
}

impl KubernetesBackend {
    async fn prepare_objects(&self, job: &JobRecord, cluster: &Cluster) -> Result<(), KubeError> {
        let record = job.clone();
        let ns = cluster.namespace.clone();
        let (url, image) = (cluster.server_url.clone(), cluster.berth_image.clone());
        let built = tokio::task::spawn_blocking(move || {
            objects::build(&record, &ns, url.as_deref(), &image)
        })
        .await
        .map_err(error::object)??;
        let name = object_name(&job.name);
        let image = objects::image_for(job.spec.environment.as_ref());
        append_log(
            job,
            &format!(
                "[berth] job {} on Kubernetes compute {} ({}, namespace {}): Job {name}, image {image}, instance type {} (requests {}, limits {})\n",
                job.name,
                job.compute,
                cluster.server,
                cluster.namespace,
                job.instance_type.name,
                job.instance_type.requests,
                job.instance_type.limits,
            ),
        )
        .await;
        if built.fetches_files {
            append_log(job, "[berth] the job's code and inputs are too large for a ConfigMap: its pod fetches them from the Berth server\n").await;
        }
        if built.downloads_urls {
            append_log(job, "[berth] its pod downloads the URL inputs in `download` mode before the command starts\n").await;
        }
        if cluster.server_url.is_none() && !job.outputs.is_empty() {
            append_log(job, "[berth] the compute has no --server-url, so the job's outputs stay in its pod and cannot be downloaded\n").await;
        }
        let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        apply_retrying(&maps, &format!("{name}-files"), &built.config_map)
            .await
            .map_err(error::api(format!(
                "cannot create the job's ConfigMap in namespace `{}`",
                cluster.namespace
            )))?;
        if let Ok(mut p) = self.pending.lock() {
            p.insert(job.name.clone(), built.job);
        }
        Ok(())
    }

    async fn create_job(&self, job: &JobRecord, cluster: &Cluster) -> Result<(), KubeError> {
        let name = object_name(&job.name);
        let obj = match self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&job.name))
        {
            Some(o) => o,
            None => {
                objects::build(
                    job,
                    &cluster.namespace,
                    cluster.server_url.as_deref(),
                    &cluster.berth_image,
                )?
                .job
            }
        };
        let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        let created = apply_retrying(&jobs, &name, &obj)
            .await
            .map_err(error::api(format!("cannot create Kubernetes Job {name}")))?;
        // The ConfigMap belongs to the Job: deleting the Job deletes it.
        if let Some(uid) = created.metadata.uid {
            let owner = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{name}-files"), "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                }]}
            });
            let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
            if let Err(e) = maps
                .patch(
                    &format!("{name}-files"),
                    &PatchParams::apply("berth-owner").force(),
                    &Patch::Apply(&owner),
                )
                .await
            {
                warn!(job = %job.name, error = %describe(&e), "cannot make the Job own its ConfigMap");
            }
        }
        Ok(())
    }
}
