//! Computes: where work runs. `local` is this machine; Kubernetes computes attach a cluster.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::names::validate_name;
use crate::resources::Resources;
use crate::yaml::{Source, SpecError};

/// The compute every workspace has: this machine.
pub const LOCAL_COMPUTE: &str = "local";

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
        })
    }
}
