//! InstanceType (`amlarc.azureml.com/v1alpha1`): the resource profile a job or deployment asks for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::names::validate_k8s_name;
use crate::quantity::Quantity;
use crate::resources::Resources;
use crate::yaml::{Source, SpecError};

/// The API group and version of the InstanceType custom resource.
pub const API_VERSION: &str = "amlarc.azureml.com/v1alpha1";
/// The name of the instance type used when a workload names none.
pub const DEFAULT_INSTANCE_TYPE: &str = "defaultinstancetype";

/// A validated instance type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceType {
    /// Unique name.
    pub name: String,
    /// Node labels a pod must match (Kubernetes compute only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// What the scheduler reserves.
    pub requests: Resources,
    /// What the workload may use at most.
    pub limits: Resources,
}

impl InstanceType {
    /// Azure ML's `defaultinstancetype`: requests 100m / 2Gi, limits 2 / 2Gi, no GPU.
    pub fn default_type() -> Self {
        let two_gi = Quantity::from_units(2 << 30);
        InstanceType {
            name: DEFAULT_INSTANCE_TYPE.into(),
            node_selector: BTreeMap::new(),
            requests: Resources::new(Quantity::from_millis(100), two_gi, 0),
            limits: Resources::new(Quantity::from_units(2), two_gi, 0),
        }
    }

    /// Parses a file holding InstanceType documents, `---`-separated, or an InstanceTypeList.
    pub fn parse_file(src: &Source<'_>) -> Result<Vec<InstanceType>, SpecError> {
        let docs: Vec<Document> = src.parse_all()?;
        if docs.is_empty() {
            return Err(SpecError::new(format!("{} holds no InstanceType", src.name))
                .hint("write one InstanceType document, several separated by ---, or an InstanceTypeList"));
        }
        let mut out = Vec::new();
        for doc in docs {
            check_api_version(src, &doc.api_version)?;
            match doc.kind.value.as_str() {
                "InstanceType" => {
                    let (metadata, spec) = match (doc.metadata, doc.spec) {
                        (Some(m), Some(s)) => (m, s),
                        _ => {
                            return Err(src.error_at(
                                &doc.kind,
                                "an InstanceType needs `metadata` and `spec`",
                            ));
                        }
                    };
                    out.push(Raw { metadata, spec }.validate(src)?);
                }
                "InstanceTypeList" => {
                    for item in doc.items.unwrap_or_default() {
                        check_api_version(src, &item.api_version)?;
                        if item.kind.value != "InstanceType" {
                            return Err(src.error_at(
                                &item.kind,
                                "an InstanceTypeList item must be `kind: InstanceType`",
                            ));
                        }
                        out.push(
                            Raw {
                                metadata: item.metadata,
                                spec: item.spec,
                            }
                            .validate(src)?,
                        );
                    }
                }
                other => {
                    return Err(src
                        .error_at(&doc.kind, format!("`kind: {other}` is not an InstanceType"))
                        .hint("use `kind: InstanceType` or `kind: InstanceTypeList`"));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for it in &out {
            if !seen.insert(it.name.clone()) {
                return Err(SpecError::new(format!(
                    "{}: instance type `{}` is defined twice",
                    src.name, it.name
                )));
            }
        }
        Ok(out)
    }
}

fn check_api_version(src: &Source<'_>, v: &Spanned<String>) -> Result<(), SpecError> {
    if v.value == API_VERSION {
        Ok(())
    } else {
        Err(src
            .error_at(v, format!("`apiVersion: {}` is not supported", v.value))
            .hint(format!("use `apiVersion: {API_VERSION}`")))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: Option<Metadata>,
    spec: Option<RawSpec>,
    items: Option<Vec<Item>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Item {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: Metadata,
    spec: RawSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // namespace, labels and annotations are accepted as Kubernetes allows them
struct Metadata {
    name: Spanned<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    resources: Spanned<RawResources>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    requests: Option<Spanned<RawList>>,
    limits: Option<Spanned<RawList>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    cpu: Option<Spanned<Quantity>>,
    memory: Option<Spanned<Quantity>>,
    #[serde(rename = "nvidia.com/gpu")]
    gpu: Option<Spanned<Quantity>>,
}

struct Raw {
    metadata: Metadata,
    spec: RawSpec,
}

impl Raw {
    fn validate(self, src: &Source<'_>) -> Result<InstanceType, SpecError> {
        let name = &self.metadata.name;
        validate_k8s_name(&name.value).map_err(|m| src.error_at(name, m))?;
        let res = &self.spec.resources;
        let missing = |what: &str| {
            src.error_at(
                res,
                format!("instance type `{}` has no `{what}`", name.value),
            )
            .hint(
                "give cpu and memory under both requests and limits, e.g. cpu: \"1\", memory: 2Gi",
            )
        };
        let requests = res
            .value
            .requests
            .as_ref()
            .ok_or_else(|| missing("resources.requests"))?;
        let limits = res
            .value
            .limits
            .as_ref()
            .ok_or_else(|| missing("resources.limits"))?;
        let req = list(src, requests, "requests", &name.value)?;
        let lim = list(src, limits, "limits", &name.value)?;
        for (what, r, l, at) in [
            ("cpu", req.cpu, lim.cpu, &requests.value.cpu),
            ("memory", req.memory, lim.memory, &requests.value.memory),
        ] {
            if r > l {
                let at = at
                    .as_ref()
                    .map(|a| src.error_at(a, ""))
                    .and_then(|e| e.position);
                return Err(SpecError {
                    position: at,
                    message: format!(
                        "the {what} request of `{}` is larger than its limit",
                        name.value
                    ),
                    hint: Some("a request must be at most the limit".into()),
                });
            }
        }
        if let Some(g) = &requests.value.gpu
            && req.gpus != lim.gpus
        {
            return Err(src
                .error_at(g, "nvidia.com/gpu in requests must equal the limit")
                .hint("put nvidia.com/gpu under limits only"));
        }
        Ok(InstanceType {
            name: name.value.clone(),
            node_selector: self.spec.node_selector,
            requests: Resources {
                gpus: lim.gpus,
                ..req
            },
            limits: lim,
        })
    }
}

fn list(
    src: &Source<'_>,
    l: &Spanned<RawList>,
    which: &str,
    name: &str,
) -> Result<Resources, SpecError> {
    let need = |q: &Option<Spanned<Quantity>>, what: &str| -> Result<Quantity, SpecError> {
        let q = q.as_ref().ok_or_else(|| {
            src.error_at(
                l,
                format!("instance type `{name}` has no {what} in {which}"),
            )
            .hint(format!("add `{what}:` under resources.{which}"))
        })?;
        if q.value.is_zero() {
            return Err(src.error_at(q, format!("{what} in {which} must be more than zero")));
        }
        Ok(q.value)
    };
    let cpu = need(&l.value.cpu, "cpu")?;
    let memory = need(&l.value.memory, "memory")?;
    let gpus = match &l.value.gpu {
        None => 0,
        Some(g) if g.value.millis() % 1000 != 0 => {
            return Err(src.error_at(g, "nvidia.com/gpu must be a whole number"));
        }
        Some(g) => u32::try_from(g.value.millis() / 1000)
            .map_err(|_| src.error_at(g, "nvidia.com/gpu is too large"))?,
    };
    Ok(Resources::new(cpu, memory, gpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../../examples/seed/instance-types.yaml");

    fn parse(text: &str) -> Result<Vec<InstanceType>, String> {
        InstanceType::parse_file(&Source::new("it.yaml", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_seed_file() {
        let types = parse(SEED).unwrap_or_default();
        let names: Vec<_> = types.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["cpu-small", "cpu-large", "gpu-training"]);
        let gpu = &types[2];
        assert_eq!(gpu.requests.gpus, 1);
        assert_eq!(gpu.limits.cpu, Quantity::from_units(8));
        assert_eq!(
            gpu.node_selector.get("agentpool").map(String::as_str),
            Some("gpupool")
        );
    }

    #[test]
    fn parses_a_list() {
        let text = "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceTypeList\nitems:\n- apiVersion: amlarc.azureml.com/v1alpha1\n  kind: InstanceType\n  metadata: {name: a}\n  spec:\n    resources:\n      requests: {cpu: 1, memory: 1Gi}\n      limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 2}\n";
        let types = parse(text).unwrap_or_default();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].limits.gpus, 2);
        assert_eq!(types[0].requests.gpus, 2, "GPU limits are the request");
    }

    fn one(resources: &str) -> Result<Vec<InstanceType>, String> {
        parse(&format!(
            "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata:\n  name: t\nspec:\n  resources:\n{resources}"
        ))
    }

    #[test]
    fn rejects_zero_and_negative_and_inverted() {
        let e = one("    requests: {cpu: \"0\", memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("it.yaml:7:") && e.contains("cpu in requests must be more than zero"),
            "{e}"
        );
        let e =
            one("    requests: {cpu: \"-1\", memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n")
                .err()
                .unwrap_or_default();
        assert!(e.contains("negative"), "{e}");
        let e = one("    requests: {cpu: 2, memory: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("cpu request of `t` is larger than its limit"),
            "{e}"
        );
        let e = one("    limits: {cpu: 1, memory: 1Gi}\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("has no `resources.requests`"), "{e}");
        let e = one("    requests: {cpu: 1}\n    limits: {cpu: 1, memory: 1Gi}\n")
            .err()
            .unwrap_or_default();
        assert!(e.contains("no memory in requests"), "{e}");
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let e = one(
            "    requests: {cpu: 1, memory: 1Gi, disk: 1Gi}\n    limits: {cpu: 1, memory: 1Gi}\n",
        )
        .err()
        .unwrap_or_default();
        assert!(
            e.starts_with("it.yaml:7:") && e.contains("unknown field `disk`"),
            "{e}"
        );
        let e = parse("apiVersion: v1\nkind: InstanceType\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("it.yaml:1:") && e.contains("apiVersion: v1"),
            "{e}"
        );
        let e = parse("apiVersion: amlarc.azureml.com/v1alpha1\nkind: Pod\n")
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("it.yaml:2:") && e.contains("`kind: Pod`"),
            "{e}"
        );
    }

    #[test]
    fn default_type_matches_azure() {
        let d = InstanceType::default_type();
        assert_eq!(d.requests.cpu.millis(), 100);
        assert_eq!(d.limits.memory.units_ceil(), 2 << 30);
    }
}
