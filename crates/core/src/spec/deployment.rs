//! Online deployments (`kubernetesOnlineDeployment.schema.json`): model, code, environment,
//! instance type and count, scale, request settings and probes.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::names::validate_name;
use crate::quantity::Quantity;
use crate::spec::asset::{AssetRef, AssetVersion, ModelType};
use crate::spec::job::{Environment, parse_environment};
use crate::yaml::{Source, SpecError};

/// Which model a deployment serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelRef {
    /// `azureml:<name>:<version>`
    Registered {
        /// Name.
        name: String,
        /// Version.
        version: String,
    },
    /// An inline `{path: ...}`, relative to the deployment file; copied in as an anonymous
    /// model version when the deployment is created.
    Path {
        /// The path as written.
        path: String,
        /// `type:`; `mlflow_model` deploys without code.
        #[serde(default)]
        model_type: ModelType,
    },
}

/// `request_settings`, with Azure's Kubernetes defaults 5000 / 1 / 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestSettings {
    /// A request slower than this gets 504.
    pub request_timeout_ms: u64,
    /// Concurrency slots per replica.
    pub max_concurrent_requests_per_instance: u32,
    /// How long a request may wait for a slot before 429.
    pub max_queue_wait_ms: u64,
}

impl Default for RequestSettings {
    fn default() -> Self {
        RequestSettings {
            request_timeout_ms: 5000,
            max_concurrent_requests_per_instance: 1,
            max_queue_wait_ms: 500,
        }
    }
}

/// `liveness_probe` / `readiness_probe`, with Azure's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// Seconds before the first probe.
    pub initial_delay: u64,
    /// Seconds between probes.
    pub period: u64,
    /// Seconds a probe may take.
    pub timeout: u64,
    /// Successes to count as passing.
    pub success_threshold: u32,
    /// Failures to count as failing.
    pub failure_threshold: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            initial_delay: 10,
            period: 10,
            timeout: 2,
            success_threshold: 1,
            failure_threshold: 30,
        }
    }
}

/// `scale_settings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScaleSettings {
    /// `instance_count` replicas.
    #[default]
    Default,
    /// Scaled by utilisation between min and max.
    TargetUtilization {
        /// At least.
        min_instances: u32,
        /// At most.
        max_instances: u32,
        /// Target utilisation, percent.
        target_utilization_percentage: u32,
        /// Seconds between decisions.
        polling_interval: u64,
    },
}

/// A validated deployment spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// Name (unique within its endpoint).
    pub name: String,
    /// The endpoint it serves.
    pub endpoint_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Code folder, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Scoring script inside the code folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_script: Option<String>,
    /// Environment (recorded on the local compute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Extra environment variables.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Instance type; `None` means `defaultinstancetype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Replicas (with `scale_settings.type: default`).
    pub instance_count: u32,
    /// Scaling.
    #[serde(default)]
    pub scale_settings: ScaleSettings,
    /// Request handling.
    #[serde(default)]
    pub request_settings: RequestSettings,
    /// Liveness probe.
    #[serde(default)]
    pub liveness_probe: ProbeSettings,
    /// Readiness probe.
    #[serde(default)]
    pub readiness_probe: ProbeSettings,
    /// Per-replica requests overriding the instance type's (cpu, memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requests: Option<(Quantity, Quantity)>,
    /// Per-replica limits (cpu, memory); must fit within the instance type's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<(Quantity, Quantity)>,
    /// Things the file asked for that Berth accepts but does differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Spanned<String>,
    endpoint_name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    model: Option<Spanned<Value>>,
    code_configuration: Option<Spanned<RawCode>>,
    environment: Option<Spanned<Value>>,
    #[serde(default)]
    environment_variables: BTreeMap<String, String>,
    instance_type: Option<String>,
    instance_count: Option<Spanned<u32>>,
    app_insights_enabled: Option<bool>,
    scale_settings: Option<Spanned<RawScale>>,
    request_settings: Option<Spanned<RequestSettings>>,
    liveness_probe: Option<ProbeSettings>,
    readiness_probe: Option<ProbeSettings>,
    resources: Option<Spanned<RawResources>>,
    model_mount_path: Option<Spanned<IgnoredAny>>,
    data_collector: Option<Spanned<IgnoredAny>>,
    egress_public_network_access: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCode {
    code: String,
    scoring_script: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScale {
    #[serde(rename = "type")]
    kind: String,
    min_instances: Option<u32>,
    max_instances: Option<u32>,
    target_utilization_percentage: Option<u32>,
    polling_interval: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    requests: Option<BTreeMap<String, Quantity>>,
    limits: Option<BTreeMap<String, Quantity>>,
}

fn parse_model(src: &Source<'_>, m: &Spanned<Value>) -> Result<ModelRef, SpecError> {
    match &m.value {
        Value::String(s) => {
            if !s.starts_with("azureml:") {
                return Err(src
                    .error_at(m, format!("`model: {s}` is not a model reference"))
                    .hint("write azureml:<name>:<version> or azureml:<name>@latest, or a mapping with `path`"));
            }
            let r = AssetRef::parse(s).map_err(|e| src.error_at(m, e))?;
            if r.from_azure {
                return Err(src
                    .error_at(m, "models in Azure ML registries cannot be fetched here")
                    .hint("register the model's files with `berth model create`"));
            }
            validate_name("model", &r.name).map_err(|e| src.error_at(m, e))?;
            Ok(ModelRef::Registered {
                name: r.name,
                version: match r.version {
                    AssetVersion::Exact(v) => v,
                    AssetVersion::Latest => "latest".into(),
                },
            })
        }
        Value::Object(o) => {
            let model_type = match o.get("type") {
                None => ModelType::CustomModel,
                Some(t) => serde_json::from_value(t.clone()).map_err(|_| {
                    src.error_at(m, format!("`type: {t}` is not a model type; use custom_model, mlflow_model or triton_model"))
                })?,
            };
            match o.get("path").and_then(Value::as_str) {
                Some(p) => Ok(ModelRef::Path {
                    path: p.to_string(),
                    model_type,
                }),
                None => Err(src.error_at(m, "an inline model needs `path`")),
            }
        }
        _ => Err(src.error_at(
            m,
            "`model` must be azureml:<name>:<version> or a mapping with `path`",
        )),
    }
}

/// `type` must be one Berth runs; a custom container's `model_mount_path` is not supported.
fn check_kind(src: &Source<'_>, raw: &RawDeployment) -> Result<(), SpecError> {
    if let Some(at) = &raw.model_mount_path {
        return Err(src
            .error_at(at, "`model_mount_path` is not supported yet")
            .hint("remove it; the model is at $AZUREML_MODEL_DIR"));
    }
    if let Some(k) = &raw.kind
        && k.value != "kubernetes"
        && k.value != "managed"
    {
        return Err(src.error_at(
            k,
            format!(
                "`type: {}` is not a deployment type; use kubernetes or managed (both run as Berth deployments)",
                k.value
            ),
        ));
    }
    Ok(())
}

/// `scale_settings`: `default`, or `target_utilization` with Azure's defaults.
fn parse_scale(
    src: &Source<'_>,
    scale: Option<Spanned<RawScale>>,
) -> Result<ScaleSettings, SpecError> {
    let Some(s) = scale else {
        return Ok(ScaleSettings::Default);
    };
    match s.value.kind.as_str() {
        "default" => Ok(ScaleSettings::Default),
        "target_utilization" => {
            let min = s.value.min_instances.unwrap_or(1);
            let max = s.value.max_instances.unwrap_or(1);
            if min == 0 || max < min {
                return Err(src.error_at(
                    &s,
                    "scale_settings: need 1 <= min_instances <= max_instances",
                ));
            }
            Ok(ScaleSettings::TargetUtilization {
                min_instances: min,
                max_instances: max,
                target_utilization_percentage: s.value.target_utilization_percentage.unwrap_or(70),
                polling_interval: s.value.polling_interval.unwrap_or(1),
            })
        }
        other => Err(src.error_at(
            &s,
            format!(
                "`scale_settings.type: {other}` is not valid; use default or target_utilization"
            ),
        )),
    }
}

/// A CPU and memory pair, as `resources` gives them.
type CpuMemory = (Quantity, Quantity);

/// `resources.requests` (required, non-zero) and `resources.limits` (optional).
fn parse_resources(
    src: &Source<'_>,
    resources: Option<Spanned<RawResources>>,
) -> Result<(Option<CpuMemory>, Option<CpuMemory>), SpecError> {
    let Some(r) = resources else {
        return Ok((None, None));
    };
    let limits = match r
        .value
        .limits
        .as_ref()
        .map(|l| (l.get("cpu"), l.get("memory")))
    {
        None => None,
        Some((Some(c), Some(m))) => Some((*c, *m)),
        Some(_) => return Err(src.error_at(&r, "`resources.limits` needs cpu and memory")),
    };
    let req = r
        .value
        .requests
        .as_ref()
        .ok_or_else(|| src.error_at(&r, "`resources` needs `requests` with cpu and memory"))?;
    let requests = match (req.get("cpu"), req.get("memory")) {
        (Some(c), Some(m)) if !c.is_zero() && !m.is_zero() => (*c, *m),
        _ => return Err(src.error_at(&r, "`resources.requests` needs non-zero cpu and memory")),
    };
    Ok((Some(requests), limits))
}

/// Fields of managed deployments that mean nothing on a machine you run yourself: accepted,
/// each with a note.
fn managed_only_notes(raw: &RawDeployment) -> Vec<String> {
    let mut notes = Vec::new();
    if raw.app_insights_enabled == Some(true) {
        notes.push(
            "app_insights_enabled is ignored: Berth exposes Prometheus metrics at /metrics instead"
                .to_string(),
        );
    }
    if raw.data_collector.is_some() {
        notes.push(
            "data_collector is ignored: Berth does not collect inference data yet".to_string(),
        );
    }
    if raw.egress_public_network_access.is_some() {
        notes.push("egress_public_network_access is ignored: replicas use the network of the machine or cluster they run on".to_string());
    }
    notes
}

impl DeploymentSpec {
    /// Parses a deployment file.
    pub fn parse(src: &Source<'_>) -> Result<DeploymentSpec, SpecError> {
        let raw: RawDeployment = src.parse()?;
        let notes = managed_only_notes(&raw);
        check_kind(src, &raw)?;
        validate_name("deployment", &raw.name.value).map_err(|m| src.error_at(&raw.name, m))?;
        validate_name("endpoint", &raw.endpoint_name.value)
            .map_err(|m| src.error_at(&raw.endpoint_name, m))?;
        let model = raw
            .model
            .as_ref()
            .map(|m| parse_model(src, m))
            .transpose()?;
        let environment = raw
            .environment
            .map(|e| parse_environment(src, e))
            .transpose()?;
        let (code, scoring_script) = match raw.code_configuration {
            Some(c) => (Some(c.value.code), Some(c.value.scoring_script)),
            None => (None, None),
        };
        if scoring_script.is_none() && model.is_none() {
            return Err(SpecError::new(format!(
                "{}: the deployment has neither `model` nor `code_configuration`",
                src.name
            ))
            .hint("give code_configuration.code and scoring_script, and usually a model"));
        }
        let instance_count = match &raw.instance_count {
            Some(c) if c.value == 0 => {
                return Err(src.error_at(c, "`instance_count` must be at least 1"));
            }
            Some(c) => c.value,
            None => 1,
        };
        let scale_settings = parse_scale(src, raw.scale_settings)?;
        let request_settings = match raw.request_settings {
            Some(r) => {
                let v = r.value;
                if v.max_concurrent_requests_per_instance == 0 || v.request_timeout_ms == 0 {
                    return Err(src.error_at(&r, "request_settings: max_concurrent_requests_per_instance and request_timeout_ms must be at least 1"));
                }
                v
            }
            None => RequestSettings::default(),
        };
        let (resource_requests, resource_limits) = parse_resources(src, raw.resources)?;
        Ok(DeploymentSpec {
            name: raw.name.value,
            endpoint_name: raw.endpoint_name.value,
            description: raw.description,
            tags: raw.tags,
            model,
            code,
            scoring_script,
            environment,
            environment_variables: raw.environment_variables,
            instance_type: raw.instance_type,
            instance_count,
            scale_settings,
            request_settings,
            liveness_probe: raw.liveness_probe.unwrap_or_default(),
            readiness_probe: raw.readiness_probe.unwrap_or_default(),
            resource_requests,
            resource_limits,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<DeploymentSpec, String> {
        DeploymentSpec::parse(&Source::new("dep.yaml", t)).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_seed_deployment() {
        let d = parse(include_str!("../../../../examples/seed/deployment.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.name, "blue");
        assert_eq!(
            d.model,
            Some(ModelRef::Registered {
                name: "my-model".into(),
                version: "1".into()
            })
        );
        assert_eq!(d.instance_type.as_deref(), Some("cpu-small"));
        assert_eq!(d.instance_count, 2);
        assert_eq!(
            d.request_settings,
            RequestSettings {
                request_timeout_ms: 3000,
                max_concurrent_requests_per_instance: 10,
                max_queue_wait_ms: 500
            }
        );
        assert_eq!(d.scoring_script.as_deref(), Some("score.py"));
    }

    #[test]
    fn rejects_bad_deployments_with_positions() {
        let base = "name: blue\nendpoint_name: e\ncode_configuration: {code: ., scoring_script: score.py}\n";
        assert!(
            parse(&format!("{base}instance_count: 0\n"))
                .unwrap_err()
                .starts_with("dep.yaml:4:17: `instance_count` must be at least 1")
        );
        assert!(
            parse(&format!("{base}model: my-model\n"))
                .unwrap_err()
                .contains("not a model reference")
        );
        assert!(
            parse(&format!("{base}model: azureml:m\n"))
                .unwrap_err()
                .contains("names no version")
        );
        assert!(
            parse(&format!("{base}request_settings: {{timeout: 1}}\n"))
                .unwrap_err()
                .contains("unknown field `timeout`")
        );
        assert!(
            parse("name: blue\nendpoint_name: e\n")
                .unwrap_err()
                .contains("neither `model` nor `code_configuration`")
        );
        let noted =
            parse(&format!("{base}app_insights_enabled: true\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(noted.notes[0].contains("Prometheus"), "{:?}", noted.notes);
        let d = parse(&format!(
            "{base}scale_settings: {{type: target_utilization, max_instances: 3}}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            d.scale_settings,
            ScaleSettings::TargetUtilization {
                min_instances: 1,
                max_instances: 3,
                target_utilization_percentage: 70,
                ..
            }
        ));
    }

    #[test]
    fn managed_only_fields_are_accepted_with_a_note() {
        let d = parse("$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\nname: blue\nendpoint_name: e\ntype: managed\nmodel: azureml:m:1\ncode_configuration: {code: ., scoring_script: score.py}\negress_public_network_access: disabled\ndata_collector:\n  collections:\n    model_inputs: {enabled: 'True'}\napp_insights_enabled: true\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.notes.len(), 3, "{:?}", d.notes);
        assert!(
            d.notes
                .iter()
                .any(|n| n.starts_with("data_collector is ignored"))
        );
        assert!(
            parse("name: blue\nendpoint_name: e\ntype: serverless\nmodel: azureml:m:1\n")
                .unwrap_err()
                .contains("not a deployment type")
        );
    }
}
