//! Online endpoints (`kubernetesOnlineEndpoint.schema.json`) and their traffic split.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::names::validate_name;
use crate::spec::job::strip_azureml;
use crate::yaml::{Source, SpecError};

/// How clients authenticate to an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Primary and secondary keys that never expire (the default).
    #[default]
    Key,
    /// Signed tokens that expire.
    AmlToken,
}

/// Traffic weights by deployment: validated to sum to 0 or 100.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, u32>", into = "BTreeMap<String, u32>")]
pub struct TrafficSplit(BTreeMap<String, u32>);

impl TryFrom<BTreeMap<String, u32>> for TrafficSplit {
    type Error = String;

    fn try_from(map: BTreeMap<String, u32>) -> Result<Self, Self::Error> {
        let sum: u64 = map.values().map(|v| u64::from(*v)).sum();
        if sum != 0 && sum != 100 {
            return Err(format!(
                "traffic weights must sum to 100 (or 0 for none), not {sum}"
            ));
        }
        Ok(TrafficSplit(map))
    }
}

impl From<TrafficSplit> for BTreeMap<String, u32> {
    fn from(t: TrafficSplit) -> Self {
        t.0
    }
}

impl TrafficSplit {
    /// Parses `"blue=90 green=10"` as `az ml online-endpoint update --traffic` takes it.
    pub fn parse_cli(s: &str) -> Result<TrafficSplit, String> {
        let mut map = BTreeMap::new();
        for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=percent"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| format!("`{v}` in `{part}` is not a whole percentage"))?;
            if v > 100 {
                return Err(format!("`{part}`: a weight is at most 100"));
            }
            map.insert(k.to_string(), v);
        }
        TrafficSplit::try_from(map)
    }

    /// The weights.
    pub fn weights(&self) -> &BTreeMap<String, u32> {
        &self.0
    }

    /// The weight of one deployment (0 when absent).
    pub fn weight(&self, deployment: &str) -> u32 {
        self.0.get(deployment).copied().unwrap_or(0)
    }
}

/// Mirror traffic: a share of live requests copied to one shadow deployment, whose answers
/// are discarded. At most one deployment, at most 50%.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, u32>", into = "BTreeMap<String, u32>")]
pub struct MirrorTraffic(BTreeMap<String, u32>);

impl TryFrom<BTreeMap<String, u32>> for MirrorTraffic {
    type Error = String;

    fn try_from(mut map: BTreeMap<String, u32>) -> Result<Self, Self::Error> {
        map.retain(|_, v| *v > 0);
        if map.len() > 1 {
            return Err("mirror traffic can go to one deployment only".into());
        }
        if map.values().any(|v| *v > 50) {
            return Err("mirror traffic is at most 50%".into());
        }
        Ok(MirrorTraffic(map))
    }
}

impl From<MirrorTraffic> for BTreeMap<String, u32> {
    fn from(t: MirrorTraffic) -> Self {
        t.0
    }
}

impl MirrorTraffic {
    /// Parses `"green=10"` as `--mirror-traffic` takes it (empty or `green=0` turns it off).
    pub fn parse_cli(s: &str) -> Result<MirrorTraffic, String> {
        let mut map = BTreeMap::new();
        for part in s.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=percent"))?;
            map.insert(
                k.to_string(),
                v.parse()
                    .map_err(|_| format!("`{v}` in `{part}` is not a whole percentage"))?,
            );
        }
        MirrorTraffic::try_from(map)
    }

    /// The shadow deployment and its share, if any.
    pub fn target(&self) -> Option<(&str, u32)> {
        self.0.iter().next().map(|(k, v)| (k.as_str(), *v))
    }
}

/// A validated endpoint spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Unique name.
    pub name: String,
    /// Compute (without `azureml:`); `None` means `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// Authentication.
    pub auth_mode: AuthMode,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Traffic split.
    #[serde(default)]
    pub traffic: TrafficSplit,
    /// Mirrored traffic.
    #[serde(default)]
    pub mirror_traffic: MirrorTraffic,
    /// Things the file asked for that Berth accepts but does differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: Spanned<String>,
    compute: Option<String>,
    auth_mode: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    traffic: Option<Spanned<BTreeMap<String, u32>>>,
    mirror_traffic: Option<Spanned<BTreeMap<String, u32>>>,
    identity: Option<Spanned<serde::de::IgnoredAny>>,
    public_network_access: Option<Spanned<serde::de::IgnoredAny>>,
    kind: Option<Spanned<serde::de::IgnoredAny>>,
}

impl EndpointSpec {
    /// Parses an endpoint file.
    pub fn parse(src: &Source<'_>) -> Result<EndpointSpec, SpecError> {
        let raw: RawEndpoint = src.parse()?;
        if let Some(at) = &raw.identity {
            return Err(src
                .error_at(at, "`identity` is not supported yet")
                .hint("remove it"));
        }
        if let Some(at) = &raw.kind {
            return Err(src
                .error_at(
                    at,
                    "`kind` is for managed online endpoints, not Kubernetes ones",
                )
                .hint("remove it"));
        }
        let mut notes = Vec::new();
        if raw.public_network_access.is_some() {
            notes.push("public_network_access is ignored: the scoring listener's address decides who can reach the endpoint".to_string());
        }
        validate_name("endpoint", &raw.name.value).map_err(|m| src.error_at(&raw.name, m))?;
        let auth_mode = match raw
            .auth_mode
            .as_ref()
            .map(|a| (a, a.value.to_ascii_lowercase()))
        {
            None => AuthMode::Key,
            Some((_, m)) if m == "key" => AuthMode::Key,
            Some((_, m)) if m == "aml_token" => AuthMode::AmlToken,
            Some((a, m)) if m == "aad_token" => {
                return Err(src
                    .error_at(
                        a,
                        "`auth_mode: aad_token` is not supported for Kubernetes online endpoints",
                    )
                    .hint("use key or aml_token"));
            }
            Some((a, _)) => {
                return Err(src.error_at(
                    a,
                    format!(
                        "`auth_mode: {}` is not valid; use key or aml_token",
                        a.value
                    ),
                ));
            }
        };
        let traffic = match raw.traffic {
            Some(t) => TrafficSplit::try_from(t.value.clone()).map_err(|m| src.error_at(&t, m))?,
            None => TrafficSplit::default(),
        };
        Ok(EndpointSpec {
            name: raw.name.value,
            compute: raw.compute.map(|c| strip_azureml(&c).to_string()),
            auth_mode,
            description: raw.description,
            tags: raw.tags,
            traffic,
            mirror_traffic: match raw.mirror_traffic {
                Some(m) => {
                    MirrorTraffic::try_from(m.value.clone()).map_err(|e| src.error_at(&m, e))?
                }
                None => MirrorTraffic::default(),
            },
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<EndpointSpec, String> {
        EndpointSpec::parse(&Source::new("ep.yaml", t)).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_seed_endpoint() {
        let ep = parse(include_str!("../../../../examples/seed/endpoint.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ep.name, "my-model-endpoint");
        assert_eq!(ep.compute.as_deref(), Some("aks-compute"));
        assert_eq!(ep.auth_mode, AuthMode::Key);
    }

    #[test]
    fn rejects_bad_endpoints_with_positions() {
        assert!(
            parse("name: e\nauth_mode: aad_token\n")
                .unwrap_err()
                .starts_with("ep.yaml:2:12: `auth_mode: aad_token` is not supported")
        );
        assert!(
            parse("name: e\ntraffic: {blue: 90, green: 20}\n")
                .unwrap_err()
                .contains("must sum to 100")
        );
        assert!(
            parse("name: e\nmirror_traffic: {green: 60}\n")
                .unwrap_err()
                .contains("at most 50%")
        );
        assert!(
            parse("name: e\nmirror_traffic: {a: 10, b: 10}\n")
                .unwrap_err()
                .contains("one deployment only")
        );
        assert!(
            parse("name: e\nscoring: x\n")
                .unwrap_err()
                .starts_with("ep.yaml:2:1: unknown field `scoring`")
        );
    }

    #[test]
    fn traffic_from_the_command_line() {
        let t = TrafficSplit::parse_cli("blue=90 green=10").unwrap_or_default();
        assert_eq!(t.weight("blue"), 90);
        assert_eq!(t.weight("red"), 0);
        assert!(
            TrafficSplit::parse_cli("blue=90")
                .unwrap_err()
                .contains("sum to 100")
        );
        assert!(TrafficSplit::parse_cli("blue").is_err());
        assert!(TrafficSplit::parse_cli("blue=0 green=0").is_ok());
    }

    #[test]
    fn public_network_access_is_accepted_with_a_note() {
        let ep = EndpointSpec::parse(&Source::new(
            "ep.yaml",
            "name: e\nauth_mode: key\npublic_network_access: disabled\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            ep.notes[0].starts_with("public_network_access is ignored"),
            "{:?}",
            ep.notes
        );
    }
}
