//! What the REST API sends and receives: request bodies, resource views and the error body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::Resources;
use crate::spec::compute::ComputeSpec;
use crate::spec::datastore::DatastoreSpec;
use crate::spec::instance_type::InstanceType;
use crate::yaml::Position;

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable code, what went wrong, where, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`JobNotFound`, `InvalidSpec`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where in the submitted file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// `POST /api/jobs`: a job file as the user wrote it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobCreateRequest {
    /// The file name, for error messages.
    pub file: String,
    /// The YAML text.
    pub yaml: String,
    /// The folder the file is in (absolute), for relative `code` and input paths.
    pub base_dir: String,
    /// `--set path=value` overrides, applied in order.
    #[serde(default)]
    pub set: Vec<String>,
    /// The sweep or pipeline this job is a child of (set by the server's drivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_name: Option<String>,
}

/// `POST /api/environments` and the other asset files: the same shape as a job file's request.
pub type AssetCreateRequest = JobCreateRequest;

/// `PUT /api/instance-types`: one or more InstanceType documents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The file name, for error messages.
    pub file: String,
    /// The YAML text.
    pub yaml: String,
}

/// A stored resource with its version, for optimistic concurrency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The resource.
    #[serde(flatten)]
    pub spec: T,
    /// Bumped on every change.
    pub resource_version: i64,
}

/// An instance type as the API shows it.
pub type InstanceTypeView = Versioned<InstanceType>;
/// A datastore as the API shows it.
pub type DatastoreView = Versioned<DatastoreSpec>;

/// A compute as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeView {
    /// The spec.
    #[serde(flatten)]
    pub spec: ComputeSpec,
    /// Always `Succeeded` once attached.
    pub provisioning_state: String,
    /// Total capacity.
    pub capacity: Resources,
    /// Capacity not reserved by running jobs.
    pub free: Resources,
    /// GPUs found on the machine.
    #[serde(default)]
    pub gpus: Vec<String>,
    /// What the cluster says (Kubernetes computes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
    /// How local jobs are contained and isolated (local computes only): cgroups, sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<String>,
    /// Version.
    pub resource_version: i64,
}

/// A Kubernetes compute's cluster, read when the compute is shown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The API server.
    pub server: String,
    /// Nodes registered.
    pub nodes: usize,
    /// InstanceTypes applied to the cluster.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Why the cluster could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job as the API shows it: Azure ML's field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Name.
    pub name: String,
    /// Always `command`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Status, as Azure ML names it.
    pub status: crate::job::JobStatus,
    /// Why it is in that status (queue shortfall, failure reason), when there is something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Failure category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<crate::job::FailureKind>,
    /// Exit code of the command, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Display name.
    pub display_name: String,
    /// Experiment.
    pub experiment_name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Compute, as `azureml:<name>`.
    pub compute: String,
    /// `{instance_type: ...}`.
    pub resources: BTreeMap<String, String>,
    /// `{timeout: ...}` when set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, u64>,
    /// The command as written.
    pub command: String,
    /// Code folder as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Environment as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<serde_json::Value>,
    /// Environment variables.
    pub environment_variables: BTreeMap<String, String>,
    /// Inputs as written.
    pub inputs: serde_json::Value,
    /// Outputs as written.
    pub outputs: serde_json::Value,
    /// `{created_at: ...}`.
    pub creation_context: BTreeMap<String, String>,
    /// When the command started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// GPUs assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// The latest value of each metric the job's MLflow run logged (NaN and the infinities as
    /// `"NaN"`, `"Infinity"`); shown by `job show`, not by `job list`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The params the job's MLflow run logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The sweep or pipeline this job is a child of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_name: Option<String>,
    /// A sweep's trials (name, parameters, status, primary metric), the best trial and its
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<serde_json::Value>,
    /// A pipeline's steps (each one's job, status, component, and the job it reused) and
    /// settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<serde_json::Value>,
    /// Archived: left out of `job list` unless asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// Its code snapshot and outputs were removed by retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    /// Version.
    pub resource_version: i64,
}

/// One point of a metric's history (`job metrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The metric.
    pub key: String,
    /// Its step.
    pub step: i64,
    /// When it was logged (ms since the epoch).
    pub timestamp: i64,
    /// The value; NaN and the infinities as MLflow writes them.
    pub value: serde_json::Value,
}

/// A file in a job output, for `job download`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the output's root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// An online endpoint as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// Name.
    pub name: String,
    /// Compute, `azureml:<name>`.
    pub compute: String,
    /// key or aml_token.
    pub auth_mode: crate::spec::endpoint::AuthMode,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Traffic weights.
    #[serde(default)]
    pub traffic: crate::spec::endpoint::TrafficSplit,
    /// Mirrored traffic.
    #[serde(default)]
    pub mirror_traffic: crate::spec::endpoint::MirrorTraffic,
    /// Where to send requests.
    pub scoring_uri: String,
    /// The swagger document of the live deployment.
    pub openapi_uri: String,
    /// Succeeded once created.
    pub provisioning_state: crate::serving::ProvisioningState,
    /// Version.
    pub resource_version: i64,
    /// Things the file asked for that Berth accepts but does differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// An online deployment as the API shows it: its spec's fields, its state and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// The spec, as Azure's fields.
    #[serde(flatten)]
    pub spec: crate::spec::deployment::DeploymentSpec,
    /// State.
    pub provisioning_state: crate::serving::ProvisioningState,
    /// Why it failed, or why its rollout waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Replicas that take requests now.
    pub ready_replicas: usize,
    /// Version.
    pub resource_version: i64,
}

/// `POST /api/jobs/prune`: remove the code snapshots and outputs of archived jobs that ended
/// more than `retain_days` ago (their records and logs stay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneRequest {
    /// Days to keep; at least 1.
    pub retain_days: u32,
    /// Only this experiment's jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    /// Say what would be freed, and free nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a prune freed (or would free).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The jobs.
    pub jobs: Vec<String>,
    /// Bytes freed (or that would be).
    pub bytes: u64,
    /// Whether nothing was removed.
    pub dry_run: bool,
}
