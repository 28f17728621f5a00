//! What is stored about models, online endpoints and deployments, and their states.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::spec::asset::ModelType;
use crate::spec::deployment::DeploymentSpec;
use crate::spec::endpoint::EndpointSpec;
use crate::spec::instance_type::InstanceType;

/// A registered model version: its files are copied under `$BERTH_HOME` and never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Its storage format: a `mlflow_model` deploys without code.
    #[serde(rename = "type", default)]
    pub model_type: ModelType,
    /// Where the copy lives: `AZUREML_MODEL_DIR`. A registered folder keeps its own name
    /// beneath it, and a file sits in it, as Azure lays models out.
    pub path: String,
    /// Where it was copied from.
    pub source: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `Development`, `Production`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Registered by a deployment's inline `model: {path: ...}`; not listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An endpoint's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointKeys {
    /// Primary key.
    #[serde(rename = "primaryKey")]
    pub primary: String,
    /// Secondary key.
    #[serde(rename = "secondaryKey")]
    pub secondary: String,
}

/// What is stored about an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The spec (traffic included).
    pub spec: EndpointSpec,
    /// Keys.
    pub keys: EndpointKeys,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A deployment's provisioning state, Azure's names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provisioning_state")]
pub enum DeploymentState {
    /// Replicas are starting.
    Creating,
    /// Every replica is ready.
    Succeeded,
    /// The deployment could not start.
    Failed {
        /// Why, with what to do.
        reason: String,
    },
    /// New replicas are starting beside the serving ones.
    Updating,
    /// Being removed.
    Deleting,
}

/// A deployment's or endpoint's `provisioning_state`, as Azure names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningState {
    /// Replicas are starting.
    Creating,
    /// Ready.
    Succeeded,
    /// Could not start.
    Failed,
    /// A new revision is starting.
    Updating,
    /// Being removed.
    Deleting,
}

impl DeploymentState {
    /// The state without its reason.
    pub fn provisioning(&self) -> ProvisioningState {
        match self {
            DeploymentState::Creating => ProvisioningState::Creating,
            DeploymentState::Succeeded => ProvisioningState::Succeeded,
            DeploymentState::Failed { .. } => ProvisioningState::Failed,
            DeploymentState::Updating => ProvisioningState::Updating,
            DeploymentState::Deleting => ProvisioningState::Deleting,
        }
    }

    /// Azure's name.
    pub fn name(&self) -> &'static str {
        match self {
            DeploymentState::Creating => "Creating",
            DeploymentState::Succeeded => "Succeeded",
            DeploymentState::Failed { .. } => "Failed",
            DeploymentState::Updating => "Updating",
            DeploymentState::Deleting => "Deleting",
        }
    }
}

/// What is stored about a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The spec.
    pub spec: DeploymentSpec,
    /// The instance type at creation.
    pub instance_type: InstanceType,
    /// Its folder: one `rev-<n>` folder per revision, with its code snapshot and replica logs.
    pub dir: String,
    /// The revision serving now (1 at creation, +1 per update).
    #[serde(default = "first_revision")]
    pub revision: u32,
    /// The scoring script inside the snapshot; `None` serves the model's `.onnx` natively.
    #[serde(default)]
    pub script: Option<String>,
    /// The model folder, if any.
    #[serde(default)]
    pub model_dir: Option<String>,
    /// The environment, resolved at creation (`None`: the machine's interpreter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::spec::environment::ResolvedEnvironment>,
    /// The file this revision was made from, `--set` applied: `update --set` starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DeploymentSource>,
    /// State.
    pub state: DeploymentState,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Random, made when the deployment is created and kept across its revisions: a
    /// deployment deleted and made again under the same name is another one (its pods' file
    /// tokens do not carry over).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// A deployment file as submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSource {
    /// Its name, for errors.
    pub file: String,
    /// Its text.
    pub yaml: String,
    /// Its folder, for relative paths.
    pub base_dir: String,
}

fn first_revision() -> u32 {
    1
}

impl DeploymentRecord {
    /// The folder of the current revision.
    pub fn revision_dir(&self) -> std::path::PathBuf {
        std::path::Path::new(&self.dir).join(format!("rev-{}", self.revision))
    }
}

/// The store key of a deployment.
pub fn deployment_key(endpoint: &str, deployment: &str) -> String {
    format!("{endpoint}/{deployment}")
}

/// The routing table the server publishes for routers (`GET /api/routes`), versioned so a
/// router can long-poll for the next change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesDoc {
    /// Chosen at random when a server starts: a router that sees another epoch takes the
    /// table whatever its version (versions start again when a server restarts).
    #[serde(default)]
    pub epoch: u64,
    /// Bumped on every change.
    pub version: u64,
    /// Every endpoint.
    pub endpoints: Vec<EndpointRoutes>,
}

/// One endpoint's routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRoutes {
    /// Name.
    pub name: String,
    /// key or aml_token.
    pub auth_mode: crate::spec::endpoint::AuthMode,
    /// Accepted keys (key mode).
    #[serde(default)]
    pub keys: Vec<String>,
    /// The token signing secret (aml_token mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// Traffic weights.
    pub traffic: crate::spec::endpoint::TrafficSplit,
    /// Mirror.
    #[serde(default)]
    pub mirror_traffic: crate::spec::endpoint::MirrorTraffic,
    /// Deployments.
    pub deployments: Vec<DeploymentRoutes>,
}

/// One deployment's routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRoutes {
    /// Name.
    pub name: String,
    /// Ready replicas (`host:port`).
    pub replicas: Vec<String>,
    /// Timeouts and slots.
    pub request_settings: crate::spec::deployment::RequestSettings,
}
