//! `berth server`'s configuration: defaults, then `$BERTH_HOME/config.yaml`, then `BERTH_*`
//! environment variables, then flags; validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_core::Quantity;
use serde::Deserialize;

/// Everything `berth server` needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// State folder: database, token, job folders.
    pub home: PathBuf,
    /// Control-plane API address (port 0 picks a free port).
    pub api_listen: SocketAddr,
    /// Scoring (inference router) address (port 0 picks a free port).
    pub scoring_listen: SocketAddr,
    /// CPU the local compute offers; default: this machine's CPUs.
    pub local_cpu: Option<Quantity>,
    /// Memory the local compute offers; default: this machine's memory.
    pub local_memory: Option<Quantity>,
    /// GPUs the local compute offers; default: those `nvidia-smi` lists.
    pub local_gpus: Option<u32>,
    /// Largest request body the API accepts, in bytes.
    pub max_body_bytes: usize,
    /// PEM certificate chain for the scoring listener (TLS when given with the key).
    pub scoring_tls_cert: Option<PathBuf>,
    /// PEM private key for the scoring listener.
    pub scoring_tls_key: Option<PathBuf>,
    /// Serve scoring over plain HTTP on a non-loopback address (Azure's allowInsecureConnections).
    pub allow_insecure_connections: bool,
    /// PEM certificate chain for the API (TLS when given with the key).
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key for the API.
    pub api_tls_key: Option<PathBuf>,
    /// Serve the API over plain HTTP on a non-loopback address.
    pub allow_insecure_api: bool,
    /// Scoring connections open at once; default: three quarters of the open-files limit
    /// (less 256), the API keeping a quarter.
    pub max_connections: Option<usize>,
    /// Seconds a connection may stay open with nothing in flight (default 60).
    pub idle_timeout_seconds: u64,
    /// The user local jobs run as (the server being root).
    pub run_as: Option<String>,
    /// Days an archived job keeps its code snapshot and outputs (its record and logs stay);
    /// checked hourly. `None`: kept for ever.
    pub retain_days: Option<u32>,
    /// Days the archived jobs of each named experiment keep their files (winning over
    /// `retain_days` for those experiments).
    pub retain_days_by_experiment: std::collections::BTreeMap<String, u32>,
    /// Where the state is kept: a `postgres://` URL, or `None` for SQLite in the home.
    pub store: Option<String>,
    /// The API URL other servers on the same database reach this one at when it leads (a
    /// standby forwards there); default: the API listener's address (its host name when it
    /// listens on every interface).
    pub advertise_url: Option<String>,
    /// The command that supervises one job (`<berth> job-supervise`).
    pub supervisor: Vec<String>,
    /// The command that runs one deployment replica (`<berth> runtime`).
    pub runtime: Vec<String>,
}

/// Settings a file, the environment or flags may give; unset fields keep the earlier value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// `api_listen: 127.0.0.1:8700`
    pub api_listen: Option<SocketAddr>,
    /// `scoring_listen: 127.0.0.1:8701`
    pub scoring_listen: Option<SocketAddr>,
    /// `local_cpu: "4"`
    pub local_cpu: Option<Quantity>,
    /// `local_memory: 8Gi`
    pub local_memory: Option<Quantity>,
    /// `local_gpus: 0`
    pub local_gpus: Option<u32>,
    /// `max_body_bytes: 8388608`
    pub max_body_bytes: Option<usize>,
    /// `scoring_tls_cert: /etc/berth/cert.pem`
    pub scoring_tls_cert: Option<PathBuf>,
    /// `scoring_tls_key: /etc/berth/key.pem`
    pub scoring_tls_key: Option<PathBuf>,
    /// `allow_insecure_connections: true`
    pub allow_insecure_connections: Option<bool>,
    /// `api_tls_cert: /etc/berth/api-cert.pem`
    pub api_tls_cert: Option<PathBuf>,
    /// `api_tls_key: /etc/berth/api-key.pem`
    pub api_tls_key: Option<PathBuf>,
    /// `allow_insecure_api: true`
    pub allow_insecure_api: Option<bool>,
    /// `max_connections: 4096` (scoring)
    pub max_connections: Option<usize>,
    /// `idle_timeout_seconds: 60`
    pub idle_timeout_seconds: Option<u64>,
    /// `run_as: ml`
    pub run_as: Option<String>,
    /// `retain_days: 30`
    pub retain_days: Option<u32>,
    /// `store: postgres://berth@db/berth`
    pub store: Option<String>,
    /// `advertise_url: http://10.0.0.5:8700`
    pub advertise_url: Option<String>,
    /// `retain_days_by_experiment: {nightly: 7}`
    pub retain_days_by_experiment: Option<std::collections::BTreeMap<String, u32>>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file does not parse.
    #[error("{0}")]
    File(berth_core::yaml::SpecError),
    /// The config file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// An environment variable holds a bad value.
    #[error("environment variable {name}={value} is not valid: {reason}")]
    Env {
        /// Variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

impl ConfigLayer {
    fn over(self, base: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            api_listen: self.api_listen.or(base.api_listen),
            scoring_listen: self.scoring_listen.or(base.scoring_listen),
            local_cpu: self.local_cpu.or(base.local_cpu),
            local_memory: self.local_memory.or(base.local_memory),
            local_gpus: self.local_gpus.or(base.local_gpus),
            max_body_bytes: self.max_body_bytes.or(base.max_body_bytes),
            scoring_tls_cert: self.scoring_tls_cert.or(base.scoring_tls_cert),
            scoring_tls_key: self.scoring_tls_key.or(base.scoring_tls_key),
            allow_insecure_connections: self
                .allow_insecure_connections
                .or(base.allow_insecure_connections),
            api_tls_cert: self.api_tls_cert.or(base.api_tls_cert),
            api_tls_key: self.api_tls_key.or(base.api_tls_key),
            allow_insecure_api: self.allow_insecure_api.or(base.allow_insecure_api),
            max_connections: self.max_connections.or(base.max_connections),
            idle_timeout_seconds: self.idle_timeout_seconds.or(base.idle_timeout_seconds),
            run_as: self.run_as.or(base.run_as),
            retain_days: self.retain_days.or(base.retain_days),
            store: self.store.or(base.store),
            advertise_url: self.advertise_url.or(base.advertise_url),
            retain_days_by_experiment: match (
                self.retain_days_by_experiment,
                base.retain_days_by_experiment,
            ) {
                (Some(mut over), Some(under)) => {
                    for (k, v) in under {
                        over.entry(k).or_insert(v);
                    }
                    Some(over)
                }
                (over, under) => over.or(under),
            },
        }
    }

    /// Reads `BERTH_API_LISTEN`, `BERTH_SCORING_LISTEN`, `BERTH_LOCAL_CPU`, `BERTH_LOCAL_MEMORY`,
    /// `BERTH_LOCAL_GPUS`, `BERTH_MAX_BODY_BYTES`, the TLS files, `BERTH_MAX_CONNECTIONS` and
    /// `BERTH_IDLE_TIMEOUT_SECONDS` through `get`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<ConfigLayer, ConfigError> {
        fn parse<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &'static str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            match get(name) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|e: T::Err| ConfigError::Env {
                    name,
                    value: v,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(ConfigLayer {
            api_listen: parse(&get, "BERTH_API_LISTEN")?,
            scoring_listen: parse(&get, "BERTH_SCORING_LISTEN")?,
            local_cpu: parse(&get, "BERTH_LOCAL_CPU")?,
            local_memory: parse(&get, "BERTH_LOCAL_MEMORY")?,
            local_gpus: parse(&get, "BERTH_LOCAL_GPUS")?,
            max_body_bytes: parse(&get, "BERTH_MAX_BODY_BYTES")?,
            scoring_tls_cert: parse(&get, "BERTH_SCORING_TLS_CERT")?,
            scoring_tls_key: parse(&get, "BERTH_SCORING_TLS_KEY")?,
            allow_insecure_connections: parse(&get, "BERTH_ALLOW_INSECURE_CONNECTIONS")?,
            api_tls_cert: parse(&get, "BERTH_API_TLS_CERT")?,
            api_tls_key: parse(&get, "BERTH_API_TLS_KEY")?,
            allow_insecure_api: parse(&get, "BERTH_ALLOW_INSECURE_API")?,
            max_connections: parse(&get, "BERTH_MAX_CONNECTIONS")?,
            idle_timeout_seconds: parse(&get, "BERTH_IDLE_TIMEOUT_SECONDS")?,
            run_as: parse(&get, "BERTH_RUN_AS")?,
            retain_days: parse(&get, "BERTH_RETAIN_DAYS")?,
            store: get("BERTH_STORE"),
            advertise_url: get("BERTH_ADVERTISE_URL"),
            retain_days_by_experiment: None,
        })
    }
}

impl ServerConfig {
    /// Builds the configuration: defaults, `home/config.yaml` if present, `env`, then `flags`.
    /// `berth` is the binary that supervises jobs and runs replicas (`None` where none run).
    pub fn load(
        home: &Path,
        env: ConfigLayer,
        flags: ConfigLayer,
        berth: Option<String>,
    ) -> Result<ServerConfig, ConfigError> {
        let file_path = home.join("config.yaml");
        let file = match std::fs::read_to_string(&file_path) {
            Ok(text) => {
                let name = file_path.display().to_string();
                berth_core::yaml::Source::new(&name, &text)
                    .parse::<ConfigLayer>()
                    .map_err(ConfigError::File)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigLayer::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: file_path,
                    source,
                });
            }
        };
        let merged = flags.over(env.over(file));
        if merged.retain_days == Some(0) {
            return Err(ConfigError::Invalid(
                "retain_days is 0: retention is counted in whole days, at least 1 (leave it out to keep everything)".into(),
            ));
        }
        let by_experiment = merged.retain_days_by_experiment.unwrap_or_default();
        if let Some((e, _)) = by_experiment.iter().find(|(_, d)| **d == 0) {
            return Err(ConfigError::Invalid(format!(
                "the retention of experiment `{e}` is 0 days: retention is counted in whole days, at least 1"
            )));
        }
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Ok(ServerConfig {
            home: home.to_path_buf(),
            api_listen: merged.api_listen.unwrap_or(loopback(8700)),
            scoring_listen: merged.scoring_listen.unwrap_or(loopback(8701)),
            local_cpu: merged.local_cpu,
            local_memory: merged.local_memory,
            local_gpus: merged.local_gpus,
            max_body_bytes: merged.max_body_bytes.unwrap_or(8 << 20),
            scoring_tls_cert: merged.scoring_tls_cert,
            scoring_tls_key: merged.scoring_tls_key,
            allow_insecure_connections: merged.allow_insecure_connections.unwrap_or(false),
            api_tls_cert: merged.api_tls_cert,
            api_tls_key: merged.api_tls_key,
            allow_insecure_api: merged.allow_insecure_api.unwrap_or(false),
            max_connections: merged.max_connections,
            idle_timeout_seconds: merged.idle_timeout_seconds.unwrap_or(60).max(1),
            run_as: merged.run_as,
            retain_days: merged.retain_days,
            store: merged.store,
            advertise_url: merged.advertise_url,
            retain_days_by_experiment: by_experiment,
            supervisor: berth
                .iter()
                .map(|b| vec![b.clone(), "job-supervise".into()])
                .next()
                .unwrap_or_default(),
            // Replicas keep out of the server's home (their code, model and environment
            // excepted).
            runtime: berth
                .iter()
                .map(|b| {
                    vec![
                        b.clone(),
                        "runtime".into(),
                        "--protect".into(),
                        home.to_string_lossy().into_owned(),
                    ]
                })
                .next()
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        std::fs::write(
            home.path().join("config.yaml"),
            "local_cpu: \"3\"\nlocal_gpus: 1\n",
        )?;
        let env = ConfigLayer::from_env(|k| (k == "BERTH_LOCAL_CPU").then(|| "2".to_string()))?;
        let flags = ConfigLayer {
            api_listen: Some("127.0.0.1:0".parse()?),
            ..Default::default()
        };
        let c = ServerConfig::load(home.path(), env, flags, None)?;
        assert_eq!(c.local_cpu, Some(Quantity::from_units(2)));
        assert_eq!(c.local_gpus, Some(1));
        assert_eq!(c.api_listen.port(), 0);
        assert_eq!(c.scoring_listen.port(), 8701);
        Ok(())
    }

    #[test]
    fn an_experiments_retention_comes_from_the_file_and_flags_and_zero_is_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        std::fs::write(
            home.path().join("config.yaml"),
            "retain_days: 30\nretain_days_by_experiment:\n  nightly: 7\n  iris: 90\n",
        )?;
        let flags = ConfigLayer {
            retain_days_by_experiment: Some([("nightly".to_string(), 2)].into()),
            ..Default::default()
        };
        let c = ServerConfig::load(home.path(), ConfigLayer::default(), flags, None)?;
        assert_eq!(c.retain_days, Some(30));
        assert_eq!(
            c.retain_days_by_experiment,
            [("iris".to_string(), 90), ("nightly".to_string(), 2)].into()
        );
        let zero = ConfigLayer {
            retain_days_by_experiment: Some([("iris".to_string(), 0)].into()),
            ..Default::default()
        };
        let err = ServerConfig::load(home.path(), ConfigLayer::default(), zero, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("experiment `iris` is 0 days"), "{err}");
        Ok(())
    }

    #[test]
    fn a_retention_of_zero_days_is_refused_at_start() -> Result<(), Box<dyn std::error::Error>> {
        let home = tempfile::tempdir()?;
        let flags = ConfigLayer {
            retain_days: Some(0),
            ..Default::default()
        };
        let err = ServerConfig::load(home.path(), ConfigLayer::default(), flags, None).err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("retain_days is 0"),
        );
        let env = ConfigLayer::from_env(|k| (k == "BERTH_RETAIN_DAYS").then(|| "30".to_string()))?;
        let c = ServerConfig::load(home.path(), env, ConfigLayer::default(), None)?;
        assert_eq!(c.retain_days, Some(30));
        Ok(())
    }

    #[test]
    fn bad_values_are_named() -> Result<(), Box<dyn std::error::Error>> {
        let err =
            ConfigLayer::from_env(|k| (k == "BERTH_LOCAL_MEMORY").then(|| "lots".to_string()))
                .err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("BERTH_LOCAL_MEMORY=lots")
        );
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join("config.yaml"), "local_cpus: 3\n")?;
        let err = ServerConfig::load(
            home.path(),
            ConfigLayer::default(),
            ConfigLayer::default(),
            None,
        )
        .err();
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains("unknown field `local_cpus`")
        );
        Ok(())
    }
}
