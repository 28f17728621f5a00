//! `berth extension create --config k=v --config-protected k=v`: the settings of the in-cluster
//! install, validated exactly as `az k8s-extension create` validates Microsoft.AzureML.Kubernetes.

use std::collections::BTreeMap;

/// Why a setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// What is wrong and what to do.
    pub message: String,
}

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
    }
}

/// The router Service's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    /// A cloud load balancer.
    LoadBalancer,
    /// A port on every node.
    NodePort,
    /// Reachable inside the cluster only.
    ClusterIp,
}

impl ServiceType {
    /// Kubernetes' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::NodePort => "NodePort",
            ServiceType::ClusterIp => "ClusterIP",
        }
    }
}

/// Where the router's TLS certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (`allowInsecureConnections=True`).
    Insecure,
    /// PEM contents given with `--config-protected sslCertPemFile=... sslKeyPemFile=...`.
    Pem {
        /// Certificate chain (PEM text).
        cert: String,
        /// Private key (PEM text).
        key: String,
        /// Host name in the scoring URI.
        cname: String,
    },
    /// An existing Secret in `azureml` holding `cert.pem` and `key.pem`.
    Secret {
        /// Secret name.
        name: String,
        /// Host name in the scoring URI.
        cname: String,
    },
}

/// Where the server keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateStore {
    /// SQLite on the server's volume (one replica).
    Home,
    /// A PostgreSQL the install runs in the cluster (`serverHA=True` without `storeUrl`).
    InCluster {
        /// Its image (`postgresImage=`).
        image: String,
    },
    /// An external PostgreSQL (`--config-protected storeUrl=postgres://...`).
    External {
        /// Its URL, password included.
        url: String,
    },
}

/// Validated extension settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionConfig {
    /// Training jobs.
    pub training: bool,
    /// Online endpoints.
    pub inference: bool,
    /// The router Service's type (inference only).
    pub service_type: Option<ServiceType>,
    /// An internal load balancer (`internalLoadBalancerProvider=azure`).
    pub internal_load_balancer: bool,
    /// Three router replicas on distinct nodes.
    pub router_ha: bool,
    /// TLS for the router.
    pub tls: Tls,
    /// Labels every pod must match (`nodeSelector.<key>=<value>`).
    pub node_selector: BTreeMap<String, String>,
    /// The image of every Berth pod (`image=`; Berth's own key).
    pub image: String,
    /// Two server replicas, a leader and a standby, on one PostgreSQL (`serverHA=True`).
    pub server_ha: bool,
    /// Where the server keeps its state.
    pub store: StateStore,
    /// The storage class of the server's volume (`serverStorageClass=`): with `serverHA` it
    /// must offer ReadWriteMany, as both replicas mount it.
    pub server_storage_class: Option<String>,
    /// Settings Berth accepts and does not need (`installPromOp`, `installVolcano`, ...).
    pub notes: Vec<String>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(format!("`{key}={v}`: use True or False"))),
    }
}

const PUBLIC: &[&str] = &[
    "enableTraining",
    "enableInference",
    "allowInsecureConnections",
    "inferenceRouterServiceType",
    "internalLoadBalancerProvider",
    "sslSecret",
    "sslCname",
    "inferenceRouterHA",
    "installNvidiaDevicePlugin",
    "installPromOp",
    "installVolcano",
    "installDcgmExporter",
    "image",
    "serverHA",
    "serverStorageClass",
    "postgresImage",
];
const PROTECTED: &[&str] = &["sslCertPemFile", "sslKeyPemFile", "storeUrl"];

impl ExtensionConfig {
    /// Validates `--config` (public) and `--config-protected` settings. Protected PEM settings
    /// carry the file contents (the CLI reads the files, as `az` does).
    pub fn parse(
        public: &BTreeMap<String, String>,
        protected: &BTreeMap<String, String>,
    ) -> Result<ExtensionConfig, ConfigError> {
        check_keys(public, protected)?;
        let flag = |k: &str, default: bool| {
            public
                .get(k)
                .map(|v| parse_bool(k, v))
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        let training = flag("enableTraining", false)?;
        let inference = flag("enableInference", false)?;
        if !training && !inference {
            return Err(err(
                "set at least one of enableTraining=True and enableInference=True",
            ));
        }
        let internal_load_balancer = match public
            .get("internalLoadBalancerProvider")
            .map(|v| v.to_ascii_lowercase())
        {
            None => false,
            Some(v) if v == "azure" => true,
            Some(v) => {
                return Err(err(format!(
                    "`internalLoadBalancerProvider={v}`: only `azure` is supported"
                )));
            }
        };
        let service_type = if inference {
            Some(service_type(public, internal_load_balancer)?)
        } else {
            None
        };
        let insecure = flag("allowInsecureConnections", false)?;
        let tls = if inference {
            tls(public, protected, insecure)?
        } else {
            Tls::Insecure
        };
        let node_selector = node_selector(public)?;
        let mut notes = Vec::new();
        for k in ["installPromOp", "installVolcano", "installDcgmExporter"] {
            if public.contains_key(k) {
                notes.push(format!("{k} is accepted and has no effect: Berth needs no Prometheus operator, Volcano or DCGM exporter"));
            }
        }
        if flag("installNvidiaDevicePlugin", false)? {
            notes.push("installNvidiaDevicePlugin is not done by Berth: install NVIDIA's device plugin (or GPU operator) so nodes offer nvidia.com/gpu".into());
        }
        let server_ha = flag("serverHA", false)?;
        let server_storage_class = public.get("serverStorageClass").cloned();
        let store = state_store(public, protected, server_ha)?;
        if server_ha && server_storage_class.is_none() {
            return Err(err(
                "serverHA=True runs two server replicas that share one volume: give serverStorageClass=<a storage class offering ReadWriteMany> (Azure Files: azurefile-csi; NFS: your NFS class)",
            ));
        }
        Ok(ExtensionConfig {
            training,
            inference,
            service_type,
            internal_load_balancer,
            router_ha: flag("inferenceRouterHA", true)?,
            tls,
            node_selector,
            image: public
                .get("image")
                .cloned()
                .unwrap_or_else(|| format!("berth:{}", env!("CARGO_PKG_VERSION"))),
            server_ha,
            store,
            server_storage_class,
            notes,
        })
    }
}

/// `storeUrl` (protected), else an in-cluster PostgreSQL for `serverHA`, else SQLite.
fn state_store(
    public: &BTreeMap<String, String>,
    protected: &BTreeMap<String, String>,
    server_ha: bool,
) -> Result<StateStore, ConfigError> {
    let image = public.get("postgresImage");
    match protected.get("storeUrl") {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if image.is_some() {
                return Err(err(
                    "postgresImage is for the in-cluster PostgreSQL; with storeUrl none is run",
                ));
            }
            Ok(StateStore::External { url: url.clone() })
        }
        Some(_) => Err(err(
            "storeUrl must be a PostgreSQL URL: postgres://user:password@host:5432/database",
        )),
        None if server_ha => Ok(StateStore::InCluster {
            image: image
                .cloned()
                .unwrap_or_else(|| "postgres:16-alpine".into()),
        }),
        None if image.is_some() => Err(err(
            "postgresImage needs serverHA=True (the in-cluster PostgreSQL runs only for it)",
        )),
        None => Ok(StateStore::Home),
    }
}

/// Every key is known, in the right one of `--config` and `--config-protected`, and in one
/// only.
fn check_keys(
    public: &BTreeMap<String, String>,
    protected: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for k in public.keys() {
        if protected.contains_key(k) {
            return Err(err(format!(
                "Duplicate keys found: `{k}` is in both --config and --config-protected"
            )));
        }
        if !PUBLIC.contains(&k.as_str()) && !k.starts_with("nodeSelector.") {
            let hint = if PROTECTED.contains(&k.as_str()) {
                " (pass it with --config-protected)".to_string()
            } else {
                format!("; known keys: {}, nodeSelector.<label>", PUBLIC.join(", "))
            };
            return Err(err(format!("unknown setting `{k}`{hint}")));
        }
    }
    for k in protected.keys() {
        if !PROTECTED.contains(&k.as_str()) {
            return Err(err(format!(
                "`{k}` is not a protected setting; protected settings are {}",
                PROTECTED.join(", ")
            )));
        }
    }
    Ok(())
}

/// `inferenceRouterServiceType`, required with inference.
fn service_type(
    public: &BTreeMap<String, String>,
    internal_load_balancer: bool,
) -> Result<ServiceType, ConfigError> {
    let v = public.get("inferenceRouterServiceType").ok_or_else(|| {
        err("enableInference=True needs inferenceRouterServiceType=loadBalancer|nodePort|clusterIP")
    })?;
    let t = match v.to_ascii_lowercase().as_str() {
        "loadbalancer" => ServiceType::LoadBalancer,
        "nodeport" => ServiceType::NodePort,
        "clusterip" => ServiceType::ClusterIp,
        _ => {
            return Err(err(format!(
                "`inferenceRouterServiceType={v}`: only supports NodePort or LoadBalancer or ClusterIP"
            )));
        }
    };
    if internal_load_balancer && t == ServiceType::NodePort {
        return Err(err(
            "internalLoadBalancerProvider and inferenceRouterServiceType=nodePort are mutually exclusive",
        ));
    }
    Ok(t)
}

/// The scoring endpoint's TLS: PEM files, a Secret, or plain HTTP only when allowed.
fn tls(
    public: &BTreeMap<String, String>,
    protected: &BTreeMap<String, String>,
    insecure: bool,
) -> Result<Tls, ConfigError> {
    let cname = || {
        public
            .get("sslCname")
            .cloned()
            .ok_or_else(|| err("TLS needs sslCname=<the host name in the scoring URI>"))
    };
    match (
        protected.get("sslCertPemFile"),
        protected.get("sslKeyPemFile"),
        public.get("sslSecret"),
    ) {
        (Some(cert), Some(key), _) => Ok(Tls::Pem {
            cert: cert.clone(),
            key: key.clone(),
            cname: cname()?,
        }),
        (Some(_), None, _) | (None, Some(_), _) => {
            Err(err("give both sslCertPemFile and sslKeyPemFile"))
        }
        (None, None, Some(secret)) => Ok(Tls::Secret {
            name: secret.clone(),
            cname: cname()?,
        }),
        (None, None, None) if insecure => Ok(Tls::Insecure),
        (None, None, None) => Err(err(
            "inference needs TLS: give --config-protected sslCertPemFile=<cert> sslKeyPemFile=<key> with --config sslCname=<host>, or --config sslSecret=<secret> sslCname=<host>, or allowInsecureConnections=True for plain HTTP",
        )),
    }
}

/// `nodeSelector.<label>=<value>` settings.
fn node_selector(
    public: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let node_selector = public
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("nodeSelector.")
                .map(|l| (l.to_string(), v.clone()))
        })
        .collect::<BTreeMap<_, _>>();
    if node_selector.keys().any(|k| k.is_empty()) {
        return Err(err(
            "`nodeSelector.` needs a label name: nodeSelector.<label>=<value>",
        ));
    }
    Ok(node_selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(public: &[(&str, &str)], protected: &[(&str, &str)]) -> Result<ExtensionConfig, String> {
        let m = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ExtensionConfig::parse(&m(public), &m(protected)).map_err(|e| e.message)
    }

    #[test]
    fn the_seed_settings_are_valid() {
        let c = cfg(
            &[("enableTraining", "True"), ("enableInference", "False")],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(c.training && !c.inference && c.service_type.is_none());
        let c = cfg(
            &[
                ("enableTraining", "True"),
                ("enableInference", "True"),
                ("inferenceRouterServiceType", "LoadBalancer"),
                ("allowInsecureConnections", "True"),
            ],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.service_type, c.tls, c.router_ha),
            (Some(ServiceType::LoadBalancer), Tls::Insecure, true)
        );
        let c = cfg(
            &[
                ("enableInference", "True"),
                ("inferenceRouterServiceType", "loadBalancer"),
                ("sslCname", "ml.example.com"),
                ("nodeSelector.pool", "ml"),
            ],
            &[("sslCertPemFile", "CERT"), ("sslKeyPemFile", "KEY")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(c.tls, Tls::Pem { ref cname, .. } if cname == "ml.example.com"));
        assert_eq!(c.node_selector.get("pool").map(String::as_str), Some("ml"));
    }

    #[test]
    fn the_server_keeps_its_state_in_sqlite_an_in_cluster_or_an_external_postgresql() {
        let home = cfg(&[("enableTraining", "True")], &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((home.store, home.server_ha), (StateStore::Home, false));
        let ha = cfg(
            &[
                ("enableTraining", "True"),
                ("serverHA", "True"),
                ("serverStorageClass", "azurefile-csi"),
            ],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(ha.server_ha);
        assert!(matches!(ha.store, StateStore::InCluster { .. }));
        let external = cfg(
            &[("enableTraining", "True")],
            &[("storeUrl", "postgres://berth:pw@db:5432/berth")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            external.store,
            StateStore::External {
                url: "postgres://berth:pw@db:5432/berth".into()
            }
        );
    }

    #[test]
    fn invalid_settings_are_explained() {
        type Settings<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Settings<'_>, Settings<'_>, &str)] = &[
            (
                &[("enableTraining", "False")],
                &[],
                "at least one of enableTraining",
            ),
            (
                &[("enableInference", "True")],
                &[],
                "needs inferenceRouterServiceType",
            ),
            (
                &[
                    ("enableInference", "True"),
                    ("inferenceRouterServiceType", "ingress"),
                ],
                &[],
                "only supports NodePort or LoadBalancer or ClusterIP",
            ),
            (
                &[
                    ("enableInference", "True"),
                    ("inferenceRouterServiceType", "clusterIP"),
                ],
                &[],
                "inference needs TLS",
            ),
            (
                &[
                    ("enableInference", "True"),
                    ("inferenceRouterServiceType", "clusterIP"),
                ],
                &[("sslCertPemFile", "C"), ("sslKeyPemFile", "K")],
                "needs sslCname",
            ),
            (
                &[
                    ("enableInference", "True"),
                    ("inferenceRouterServiceType", "nodePort"),
                    ("internalLoadBalancerProvider", "azure"),
                    ("allowInsecureConnections", "True"),
                ],
                &[],
                "mutually exclusive",
            ),
            (
                &[("enableTraining", "True"), ("enableTrainning", "True")],
                &[],
                "unknown setting `enableTrainning`",
            ),
            (
                &[("enableTraining", "True"), ("sslCertPemFile", "x")],
                &[],
                "pass it with --config-protected",
            ),
            (
                &[("enableTraining", "True")],
                &[("enableTraining", "True")],
                "Duplicate keys",
            ),
            (&[("enableTraining", "yes")], &[], "use True or False"),
            (
                &[("enableTraining", "True"), ("serverHA", "True")],
                &[],
                "give serverStorageClass=",
            ),
            (
                &[("enableTraining", "True")],
                &[("storeUrl", "mysql://db/berth")],
                "storeUrl must be a PostgreSQL URL",
            ),
            (
                &[("enableTraining", "True"), ("storeUrl", "postgres://db/b")],
                &[],
                "pass it with --config-protected",
            ),
            (
                &[("enableTraining", "True"), ("postgresImage", "postgres:15")],
                &[],
                "postgresImage needs serverHA=True",
            ),
        ];
        for (public, protected, want) in cases {
            let e = cfg(public, protected).err().unwrap_or_default();
            assert!(e.contains(want), "{public:?} {protected:?}: {e}");
        }
    }
}
