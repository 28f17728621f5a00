//! One revision of a deployment, as every backend runs it: the replica count and the Python
//! workers per replica are computed here and nowhere else.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::conda::PythonEnv;
use berth_core::serving::{DeploymentRecord, deployment_key};
use berth_core::spec::deployment::{ProbeSettings, ScaleSettings};
use berth_core::spec::environment::ResolvedEnvironment;
use berth_core::spec::instance_type::InstanceType;

use crate::workdir::RevisionDir;

/// Where a deployment's replicas run.
#[derive(Clone)]
pub enum Placement {
    /// Processes on this machine.
    Local,
    /// A Kubernetes Deployment on an attached cluster, whose pods fetch what does not fit a
    /// ConfigMap from `fetch`.
    #[cfg(feature = "kubernetes")]
    Cluster {
        /// The cluster.
        cluster: Box<crate::backend::kubernetes::cluster::Cluster>,
        /// Where pods fetch the revision's files, with a token for this revision.
        fetch: Option<crate::backend::kubernetes::delivery::Fetch>,
    },
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Local => f.write_str("Local"),
            #[cfg(feature = "kubernetes")]
            Placement::Cluster { cluster, .. } => write!(
                f,
                "Cluster({} namespace {})",
                cluster.server, cluster.namespace
            ),
        }
    }
}

/// How to run one revision of a deployment.
#[derive(Clone, Debug)]
pub struct RevisionPlan {
    /// The endpoint.
    pub endpoint: String,
    /// The deployment.
    pub deployment: String,
    /// The revision.
    pub revision: u32,
    /// Where it runs.
    pub placement: Placement,
    /// Replicas to start with.
    pub replicas: u32,
    /// How it scales.
    pub scale: ScaleSettings,
    /// Python workers per replica: the instance type's CPU request, rounded up.
    pub workers: usize,
    /// A hung `run()` is replaced after this.
    pub request_timeout_ms: u64,
    /// The revision's code snapshot and the scoring script in it; `None` serves the model's
    /// `.onnx` file natively.
    pub code: Option<(PathBuf, String)>,
    /// The model folder (`AZUREML_MODEL_DIR`).
    pub model_dir: Option<PathBuf>,
    /// The deployment's environment; its Python environment, if any, is built for the
    /// replicas.
    pub environment: Option<ResolvedEnvironment>,
    /// Environment variables for score.py.
    pub env: BTreeMap<String, String>,
    /// The revision's folder (code, logs, environment.log).
    pub dir: RevisionDir,
    /// Resources and node selector.
    pub instance_type: InstanceType,
    /// The container image (used on Kubernetes).
    pub image: String,
    /// Liveness probe.
    pub liveness: ProbeSettings,
    /// Readiness probe.
    pub readiness: ProbeSettings,
}

impl RevisionPlan {
    /// The plan of `d`'s current revision, placed by `placement` in `image`.
    pub fn new(d: &DeploymentRecord, placement: Placement, image: String) -> RevisionPlan {
        let dir = RevisionDir::of(&d.dir, d.revision);
        let code_dir = dir.code();
        let code = d.script.as_ref().and_then(|script| {
            let rel = std::path::Path::new(script).strip_prefix(&code_dir).ok()?;
            Some((code_dir.clone(), rel.to_string_lossy().into_owned()))
        });
        RevisionPlan {
            endpoint: d.spec.endpoint_name.clone(),
            deployment: d.spec.name.clone(),
            revision: d.revision,
            placement,
            replicas: initial_replicas(&d.spec.scale_settings, d.spec.instance_count),
            scale: d.spec.scale_settings,
            workers: workers_for(&d.instance_type),
            request_timeout_ms: d.spec.request_settings.request_timeout_ms,
            code,
            model_dir: d.model_dir.as_ref().map(PathBuf::from),
            environment: d.environment.clone(),
            env: d.spec.environment_variables.clone().into_iter().collect(),
            dir,
            instance_type: d.instance_type.clone(),
            image,
            liveness: d.spec.liveness_probe,
            readiness: d.spec.readiness_probe,
        }
    }

    /// The Python environment to build, if any.
    pub fn python_env(&self) -> Option<&PythonEnv> {
        self.environment.as_ref().and_then(|e| e.python.as_ref())
    }

    /// `endpoint/deployment`.
    pub fn key(&self) -> String {
        deployment_key(&self.endpoint, &self.deployment)
    }

    /// How long replicas taken out of service keep answering requests already in flight.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms + 1000)
    }
}

/// Replicas a revision starts with: `instance_count`, or `min_instances` when it autoscales.
pub fn initial_replicas(scale: &ScaleSettings, instance_count: u32) -> u32 {
    match scale {
        ScaleSettings::TargetUtilization { min_instances, .. } => *min_instances,
        ScaleSettings::Default => instance_count,
    }
}

/// Python workers per replica: the instance type's CPU request, rounded up, at least one.
pub fn workers_for(it: &InstanceType) -> usize {
    usize::try_from((it.requests.cpu.millis() + 999) / 1000)
        .unwrap_or(1)
        .max(1)
}
