//! Computes: where work runs. `local` is this machine; Kubernetes computes attach a cluster.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::names::validate_name;
use crate::resources::Resources;
use crate::yaml::{Source, SpecError};

/// The compute every workspace has: this machine.
pub const LOCAL_COMPUTE: &str = "local";

/// The compute a job names, without `azureml:`; `serverless` (Azure ML picks the machine)
/// is the local compute.
pub fn effective_compute(written: &str) -> String {
    match written.trim().trim_start_matches("azureml:") {
        "serverless" => LOCAL_COMPUTE.to_string(),
        other => other.to_string(),
    }
}

/// Which kind of compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeKind {
    /// Processes on the machine running `berth server`.
    Local,
    /// A Kubernetes cluster.
    Kubernetes,
}

impl ComputeKind {
    /// Parses `--type` as `az ml compute attach` spells it (any case).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "local" => Ok(ComputeKind::Local),
            "kubernetes" => Ok(ComputeKind::Kubernetes),
            other => Err(format!(
                "`{other}` is not a compute type; use local or Kubernetes"
            )),
        }
    }
}

/// A validated compute spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeSpec {
    /// Unique name.
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: ComputeKind,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Capacity to use instead of the machine's (local only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Resources>,
    /// The cluster and namespace (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
}

/// Where a Kubernetes compute runs work: a cluster reached by a kubeconfig, and a namespace.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesTarget {
    /// The kubeconfig's text (it holds credentials: never shown back, so views leave it empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubeconfig: String,
    /// Use the server's own pod identity (its ServiceAccount) instead of a kubeconfig: for the
    /// server the extension installs, attaching the cluster it runs in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_cluster: bool,
    /// The kubeconfig context; its current context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace jobs and deployments go to.
    pub namespace: String,
    /// The URL pods reach this server at, to upload job outputs (e.g.
    /// `http://berth-server.azureml.svc:8700` in the cluster). Without it outputs stay in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// The image pods copy the `berth` binary from; default: `$BERTH_IMAGE` (set in the
    /// extension's server pod to its own image), else `berth:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub berth_image: Option<String>,
}

impl std::fmt::Debug for KubernetesTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesTarget")
            .field("kubeconfig", &"<redacted>")
            .field("context", &self.context)
            .field("in_cluster", &self.in_cluster)
            .field("namespace", &self.namespace)
            .field("server_url", &self.server_url)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompute {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    description: Option<String>,
}

impl ComputeSpec {
    /// Parses a compute YAML file.
    pub fn parse(src: &Source<'_>) -> Result<ComputeSpec, SpecError> {
        let raw: RawCompute = src.parse()?;
        validate_name("compute", &raw.name.value).map_err(|m| src.error_at(&raw.name, m))?;
        let kind = ComputeKind::parse(&raw.kind.value).map_err(|m| src.error_at(&raw.kind, m))?;
        Ok(ComputeSpec {
            name: raw.name.value,
            kind,
            description: raw.description,
            capacity: None,
            kubernetes: None,
        })
    }
}
