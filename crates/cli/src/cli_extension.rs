//! `berth extension ...` flags: the cluster an install is on, and its `az k8s-extension` settings.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `berth extension ...`
#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Print the manifests of the in-cluster install (for kubectl apply or GitOps).
    Render {
        #[command(flatten)]
        target: ExtensionTarget,
        #[command(flatten)]
        settings: ExtensionSettings,
    },
    /// Check the cluster, install the in-cluster parts and wait until they are ready.
    Create {
        #[command(flatten)]
        target: ExtensionTarget,
        #[command(flatten)]
        settings: ExtensionSettings,
        #[command(flatten)]
        wait: Readiness,
    },
    /// Provisioning state, version, settings and each component's readiness.
    Show {
        #[command(flatten)]
        target: ExtensionTarget,
    },
    /// Change settings: the given ones replace the recorded ones; only what changed is applied.
    Update {
        #[command(flatten)]
        target: ExtensionTarget,
        #[command(flatten)]
        settings: ExtensionSettings,
        #[command(flatten)]
        wait: Readiness,
    },
    /// Remove everything `create` made, and nothing else.
    Delete {
        #[command(flatten)]
        target: ExtensionTarget,
        /// Do not ask for confirmation (accepted for az compatibility).
        #[arg(short, long)]
        yes: bool,
    },
}

/// Whether and how long `create` and `update` wait for the components to be ready.
#[derive(Clone, Copy, Debug, Args)]
pub struct Readiness {
    /// Return once everything is applied, without waiting for readiness.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for readiness.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// Which cluster and install an extension verb acts on.
#[derive(Debug, Args)]
pub struct ExtensionTarget {
    /// Extension name.
    #[arg(short, long, default_value = "berth")]
    pub name: String,
    /// Cluster name (accepted for az compatibility; the kubeconfig picks the cluster).
    #[arg(short, long)]
    pub cluster_name: Option<String>,
    /// The kubeconfig [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current context].
    #[arg(long)]
    pub context: Option<String>,
    /// Accepted for az compatibility and ignored.
    #[arg(long, hide = true)]
    pub cluster_type: Option<String>,
    /// Accepted for az compatibility and ignored.
    #[arg(long, hide = true)]
    pub extension_type: Option<String>,
    /// Accepted for az compatibility and ignored.
    #[arg(long, hide = true)]
    pub scope: Option<String>,
}

/// `--config` and `--config-protected`.
#[derive(Debug, Args)]
pub struct ExtensionSettings {
    /// Settings: enableTraining=True enableInference=True inferenceRouterServiceType=LoadBalancer ...
    #[arg(long = "config", alias = "configuration-settings", num_args = 1.., value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Protected settings: sslCertPemFile=<path> sslKeyPemFile=<path> (the files are read here).
    #[arg(long = "config-protected", alias = "configuration-protected-settings", num_args = 1.., value_name = "KEY=VALUE")]
    pub config_protected: Vec<String>,
}
