//! The command line, as clap types: `az ml`-shaped verbs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::cli_component::ComponentCommand;
#[cfg(feature = "kubernetes")]
pub use crate::cli_extension::{ExtensionCommand, ExtensionSettings, ExtensionTarget, Readiness};

/// Berth: training jobs and inference endpoints on one machine or a Kubernetes cluster,
/// with Azure ML's YAML and verbs.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
pub struct Cli {
    /// State folder of the local server (default: $BERTH_HOME, else ~/.berth).
    #[arg(long, global = true, env = "BERTH_HOME")]
    pub home: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// A JMESPath query over the result, as in az: `--query scoring_uri`,
    /// `--query "{name: name, state: provisioning_state}" -o table`, `--query "[].name"`.
    #[arg(long, global = true)]
    pub query: Option<String>,
    /// Accepted so az lines work as they are; not used: a Berth server is one workspace.
    #[arg(
        short = 'g',
        long = "resource-group",
        global = true,
        value_name = "NAME"
    )]
    pub resource_group: Option<String>,
    /// Accepted so az lines work as they are; not used: a Berth server is one workspace.
    #[arg(
        short = 'w',
        long = "workspace-name",
        global = true,
        value_name = "NAME"
    )]
    pub workspace_name: Option<String>,
    /// Accepted so az lines work as they are; not used: a Berth server is one workspace.
    #[arg(long, global = true, value_name = "ID")]
    pub subscription: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON, with Azure ML's field names.
    Json,
    /// YAML.
    Yaml,
    /// Tab-separated values, for scripts.
    Tsv,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (API, scheduler, local compute) in the foreground.
    Server(ServerArgs),
    /// Training jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Instance types: the resource profiles jobs ask for.
    #[command(subcommand, name = "instance-type")]
    InstanceType(InstanceTypeCommand),
    /// Computes: where jobs run.
    #[command(subcommand)]
    Compute(ComputeCommand),
    /// Datastores: named folders jobs read and write.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Environments: an image and/or a conda file, built into a Python virtual environment.
    #[command(subcommand)]
    Environment(EnvironmentCommand),
    /// Components: named, versioned steps with typed inputs and outputs, for pipelines.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Models: versioned files a deployment serves.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Data assets: versioned files and folders jobs take as inputs.
    #[command(subcommand)]
    Data(DataCommand),
    /// Online endpoints: a scoring URI with keys and a traffic split.
    #[command(subcommand, name = "online-endpoint")]
    OnlineEndpoint(EndpointCommand),
    /// Online deployments: replicas serving a model behind an endpoint.
    #[command(subcommand, name = "online-deployment")]
    OnlineDeployment(DeploymentCommand),
    /// The in-cluster install (Kubernetes), as `az k8s-extension` does it.
    #[cfg(feature = "kubernetes")]
    #[command(subcommand)]
    Extension(ExtensionCommand),
    /// Run the inference router on its own, following a server's routes (as in a cluster).
    Router(RouterArgs),
    /// Serve one deployment replica: score.py in a pool of Python workers.
    Runtime(RuntimeArgs),
    /// Supervise one job's process (started by the server; not for people).
    #[command(name = "job-supervise", hide = true)]
    JobSupervise {
        /// The job's folder.
        #[arg(required_unless_present = "next")]
        dir: Option<PathBuf>,
        /// Start as a spare: wait for the job on standard input (one JSON line).
        #[arg(long, conflicts_with = "dir")]
        next: bool,
    },
    /// Run a Kubernetes job's command, then upload its outputs (in the job's pod; not for people).
    #[command(name = "job-run", hide = true)]
    JobRun {
        /// Copy this folder's contents into the working folder, with outputs/ and logs/.
        #[arg(long)]
        code_from: Option<PathBuf>,
        /// Build $BERTH_PYTHON_ENV with uv under this folder and run the command in it.
        #[arg(long)]
        env_dir: Option<PathBuf>,
        /// `<server>/api/jobs/<name>/uploads`; the token is in $BERTH_UPLOAD_TOKEN.
        #[arg(long)]
        upload_url: Option<String>,
        /// `name=folder` of each output.
        #[arg(long = "output-dir")]
        outputs: Vec<String>,
        /// The command.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Build $BERTH_PYTHON_ENV with uv under a folder (in a replica pod's init container;
    /// not for people).
    #[command(name = "env-build", hide = true)]
    EnvBuild {
        /// The folder the environment is built under.
        #[arg(long)]
        into: PathBuf,
    },
    /// Fetch a pod's files from the Berth server and download its URL inputs (in an init
    /// container; not for people).
    #[command(hide = true)]
    Fetch {
        /// The listing, `<server>/api/.../files`; the token is in $BERTH_FETCH_TOKEN.
        #[arg(long, requires = "into")]
        url: Option<String>,
        /// `part=folder`: where the files of each part go.
        #[arg(long, requires = "url")]
        into: Vec<String>,
        /// `folder=URL`: a URL to download into a folder (no token is sent).
        #[arg(long)]
        download: Vec<String>,
    },
}

/// `berth server` flags.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// API address (port 0 picks a free port) [default: 127.0.0.1:8700].
    #[arg(long)]
    pub api_listen: Option<std::net::SocketAddr>,
    /// Scoring address (port 0 picks a free port) [default: 127.0.0.1:8701].
    #[arg(long)]
    pub scoring_listen: Option<std::net::SocketAddr>,
    /// CPU the local compute offers [default: this machine's].
    #[arg(long)]
    pub local_cpu: Option<berth_core::Quantity>,
    /// Memory the local compute offers, e.g. 8Gi [default: this machine's].
    #[arg(long)]
    pub local_memory: Option<berth_core::Quantity>,
    /// GPUs the local compute offers [default: those nvidia-smi lists].
    #[arg(long)]
    pub local_gpus: Option<u32>,
    /// PEM certificate chain (server first) for HTTPS scoring.
    #[arg(long, requires = "scoring_tls_key")]
    pub scoring_tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS scoring.
    #[arg(long, requires = "scoring_tls_cert")]
    pub scoring_tls_key: Option<PathBuf>,
    /// Serve scoring over plain HTTP on a non-loopback address.
    #[arg(long)]
    pub allow_insecure_connections: bool,
    /// PEM certificate chain (server first) for an HTTPS API.
    #[arg(long, requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key for an HTTPS API.
    #[arg(long, requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// Serve the API over plain HTTP on a non-loopback address.
    #[arg(long)]
    pub allow_insecure_api: bool,
    /// Scoring connections open at once [default: from the open-files limit].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a connection may stay open with nothing in flight [default: 60].
    #[arg(long)]
    pub idle_timeout_seconds: Option<u64>,
    /// Days an archived job keeps its code snapshot and outputs (its record and logs stay);
    /// checked hourly [default: kept for ever].
    #[arg(long)]
    pub retain_days: Option<u32>,
    /// Days the archived jobs of one experiment keep their files, instead of --retain-days
    /// (repeatable): --retain-days-for nightly=7.
    #[arg(long, value_name = "EXPERIMENT=DAYS")]
    pub retain_days_for: Vec<String>,
    /// Keep the state in PostgreSQL (postgres://user[:password]@host[:port]/database)
    /// instead of SQLite in the home [env: BERTH_STORE].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With --store: the API URL a standby forwards to while this server leads
    /// [env: BERTH_ADVERTISE_URL; default: the API listener's address].
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Run local jobs' commands as this user (name or uid); the server must run as root.
    #[arg(long)]
    pub run_as: Option<String>,
}

/// `berth router` flags.
#[derive(Debug, Args)]
pub struct RouterArgs {
    /// Address to serve scoring on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8702")]
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address.
    #[arg(long)]
    pub allow_insecure_connections: bool,
    /// Connections open at once [default: the open-files limit less 256].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a connection may stay open with nothing in flight [default: 60].
    #[arg(long)]
    pub idle_timeout_seconds: Option<u64>,
}

/// `berth runtime` flags.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// The scoring script (defines init() and run()); without it, the .onnx file in
    /// --model-dir is served natively.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// The model folder, given to score.py as AZUREML_MODEL_DIR.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Address to serve on: host:port (port 0 picks a free port), or unix:/absolute/path for
    /// a socket only this user can open (how `berth server` starts its replicas).
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub listen: berth_runtime::ListenAddr,
    /// Python worker processes [default: this machine's CPUs].
    #[arg(long, env = "WORKER_COUNT")]
    pub workers: Option<usize>,
    /// Python interpreter.
    #[arg(long, env = "BERTH_PYTHON", default_value = "python3")]
    pub python: String,
    /// How long run() may take before its worker is replaced, in ms.
    #[arg(long, env = "SCORING_TIMEOUT_MS", default_value_t = 60_000)]
    pub request_timeout_ms: u64,
    /// How long a request may wait for a free worker, in ms.
    #[arg(long, default_value_t = 60_000)]
    pub max_queue_wait_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 100 << 20)]
    pub max_body_bytes: usize,
    /// Write the bound address here once the replica is ready.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Join the cgroup of this `cgroup.procs` file first thing (repeatable; set by `berth
    /// server`, one per hierarchy).
    #[arg(long, hide = true)]
    pub cgroup_procs: Vec<PathBuf>,
    /// Exit when the parent process dies (set by `berth server` for its replicas).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
    /// Keep this replica out of this folder (the server's home), its script's folder, model,
    /// environment and ready file excepted (Landlock, where the kernel has it).
    #[arg(long, hide = true)]
    pub protect: Option<PathBuf>,
}

/// `berth job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job from a YAML file.
    Create {
        /// The job file.
        #[arg(short, long)]
        file: PathBuf,
        /// Job name (default: from the file, else generated).
        #[arg(short, long)]
        name: Option<String>,
        /// Override a field: --set limits.timeout=600 (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Stream the job's log until it ends; exit non-zero unless it completes.
        #[arg(long)]
        stream: bool,
    },
    /// Show a job.
    Show {
        /// Job name.
        #[arg(short, long)]
        name: String,
    },
    /// List jobs, newest first: the first 50 unless told otherwise.
    List {
        /// Only the trials or steps of this sweep or pipeline.
        #[arg(long)]
        parent_job_name: Option<String>,
        /// How many jobs (default 50, as az); with --all-results, how many a page.
        #[arg(short = 'r', long)]
        max_results: Option<i64>,
        /// Every job, a page at a time.
        #[arg(long)]
        all_results: bool,
        /// Only jobs with this status (repeatable).
        #[arg(long)]
        status: Vec<String>,
        /// Only this experiment's jobs.
        #[arg(long)]
        experiment_name: Option<String>,
        /// Only the jobs of this compute.
        #[arg(long)]
        compute: Option<String>,
        /// Only jobs with this tag, KEY=VALUE (repeatable; all must match).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Only jobs accepted at or after this time (2026-11-30 or RFC 3339).
        #[arg(long)]
        created_after: Option<String>,
        /// Only jobs accepted before this time (2026-11-30 or RFC 3339).
        #[arg(long)]
        created_before: Option<String>,
        /// Archived jobs too.
        #[arg(long, conflicts_with = "archived_only")]
        include_archived: bool,
        /// Only archived jobs.
        #[arg(long)]
        archived_only: bool,
    },
    /// Archive a job that has ended: it leaves `job list` (see --include-archived).
    Archive {
        /// Job name.
        #[arg(short, long)]
        name: String,
    },
    /// Restore an archived job.
    Restore {
        /// Job name.
        #[arg(short, long)]
        name: String,
    },
    /// Remove the code snapshots and outputs of archived jobs that ended more than
    /// --retain-days ago; their records and logs stay.
    Prune {
        /// Days to keep (at least 1).
        #[arg(long)]
        retain_days: u32,
        /// Only this experiment's jobs.
        #[arg(long)]
        experiment_name: Option<String>,
        /// Say what would be freed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stream a job's log until it ends; exit non-zero unless it completes.
    Stream {
        /// Job name.
        #[arg(short, long)]
        name: String,
    },
    /// Cancel a job.
    Cancel {
        /// Job name.
        #[arg(short, long)]
        name: String,
    },
    /// The metrics the job's MLflow run logged: every point (step, timestamp, value).
    Metrics {
        /// Job name.
        #[arg(short, long)]
        name: String,
        /// Only this metric.
        #[arg(long)]
        metric: Option<String>,
    },
    /// Download a job's outputs (and with --all, its logs).
    Download {
        /// Job name.
        #[arg(short, long)]
        name: String,
        /// The output to download.
        #[arg(long)]
        output_name: Option<String>,
        /// Download every output and the logs.
        #[arg(long)]
        all: bool,
        /// Where to put them [default: the current folder].
        #[arg(long, default_value = ".")]
        download_path: PathBuf,
    },
}

/// `berth instance-type ...`
#[derive(Debug, Subcommand)]
pub enum InstanceTypeCommand {
    /// Create or update the InstanceTypes in a file (all or nothing).
    Apply {
        /// The file (one or more documents, or an InstanceTypeList).
        #[arg(short, long)]
        file: PathBuf,
    },
    /// List instance types.
    List,
    /// Show an instance type.
    Show {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
    /// Delete an instance type.
    Delete {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
}

/// `berth compute ...`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run; boxing would only obscure clap's fields
pub enum ComputeCommand {
    /// Attach a compute.
    Attach {
        /// local (this machine) or Kubernetes.
        #[arg(long = "type", required_unless_present = "file")]
        kind: Option<String>,
        /// Compute name.
        #[arg(short, long, required_unless_present = "file")]
        name: Option<String>,
        /// A compute YAML file instead of flags.
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Kubernetes: the kubeconfig file of the cluster (its text is sent to the server).
        #[arg(long, conflicts_with = "in_cluster")]
        kubeconfig: Option<PathBuf>,
        /// Kubernetes: the server attaches the cluster it runs in, as its own ServiceAccount
        /// (for the server `berth extension create` installs).
        #[arg(long)]
        in_cluster: bool,
        /// Kubernetes: the kubeconfig context [default: the context named after --resource-id's
        /// cluster if there is one, else the current context].
        #[arg(long)]
        context: Option<String>,
        /// Kubernetes: the cluster's Azure resource ID, as `az ml compute attach` takes it. Without
        /// --kubeconfig, $KUBECONFIG or ~/.kube/config is used, with the context named after the
        /// cluster (`.../managedClusters/<name>`) when it has one.
        #[arg(long, conflicts_with = "in_cluster")]
        resource_id: Option<String>,
        /// Kubernetes: the namespace jobs and deployments go to.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Kubernetes: create the namespace when it does not exist.
        #[arg(long)]
        create_namespace: bool,
        /// Kubernetes: the URL pods reach this server at, to upload job outputs and fetch files
        /// too large for a ConfigMap (in the cluster: http://berth-server.azureml.svc:8700).
        #[arg(long)]
        server_url: Option<String>,
        /// Kubernetes: the image pods copy the `berth` binary from
        /// [default: the installed server's own image, else berth:<version>].
        #[arg(long)]
        berth_image: Option<String>,
    },
    /// Show a compute.
    Show {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
    /// List computes.
    List,
    /// Detach a compute.
    Detach {
        /// Name.
        #[arg(short, long)]
        name: String,
        /// Detach even with unfinished jobs (they are canceled).
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation (accepted for az compatibility).
        #[arg(short, long)]
        yes: bool,
    },
}

/// `berth datastore ...`
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Create a datastore over a local folder.
    Create {
        /// Name.
        #[arg(short, long, required_unless_present = "file")]
        name: Option<String>,
        /// The folder.
        #[arg(long, required_unless_present = "file")]
        path: Option<PathBuf>,
        /// A datastore YAML file instead of flags.
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
    /// List datastores.
    List,
    /// Show a datastore.
    Show {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
}

/// `berth environment ...`
#[derive(Debug, Subcommand)]
pub enum EnvironmentCommand {
    /// Register an environment version from Azure ML's environment YAML (name, version, image,
    /// conda_file). Versions never change.
    Create {
        /// The environment file.
        #[arg(short, long)]
        file: PathBuf,
        /// Name (default: the file's).
        #[arg(short, long)]
        name: Option<String>,
        /// Version (default: the file's, else one more than the latest number).
        #[arg(short, long)]
        version: Option<String>,
        /// Override a field: --set image=... (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// List environment versions.
    List {
        /// Only this environment's versions.
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Show an environment version (the latest unless --version is given).
    Show(AssetShowArgs),
}

/// `berth model ...`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register a model version from Azure ML's model YAML, or from flags. Its files are
    /// copied and never change; a folder keeps its name beneath AZUREML_MODEL_DIR.
    Create {
        #[command(flatten)]
        asset: AssetCreateArgs,
        /// custom_model (the default), mlflow_model (deploys without code) or triton_model.
        #[arg(short = 't', long = "type")]
        model_type: Option<String>,
    },
    /// List model versions.
    List {
        /// Only this model's versions.
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Show a model version (the latest unless --version is given).
    Show(AssetShowArgs),
}

/// `berth data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Register a data asset version from Azure ML's data YAML, or from flags: uri_file or
    /// uri_folder; local files are copied, datastore paths and URLs referenced.
    Create {
        #[command(flatten)]
        asset: AssetCreateArgs,
        /// uri_folder (the default) or uri_file.
        #[arg(short = 't', long = "type")]
        data_type: Option<String>,
    },
    /// List data asset versions.
    List {
        /// Only this data asset's versions.
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Show a data asset version (the latest unless --version is given).
    Show(AssetShowArgs),
}

/// What creates a model or data asset version: a file, flags, or both (flags win).
#[derive(Debug, clap::Args)]
pub struct AssetCreateArgs {
    /// The asset's YAML file.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Name (default: the file's).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Version (default: the file's, else one more than the latest number).
    #[arg(short, long)]
    pub version: Option<String>,
    /// The files: a local file or folder, azureml://datastores/<d>/paths/<p>,
    /// azureml://jobs/<job>/outputs/<output> (or an https URL, for data).
    #[arg(short, long)]
    pub path: Option<String>,
    /// Description.
    #[arg(short, long)]
    pub description: Option<String>,
    /// Override a field: --set tags.team=ml (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// Which version of an asset to show.
#[derive(Debug, clap::Args)]
pub struct AssetShowArgs {
    /// Name.
    #[arg(short, long)]
    pub name: String,
    /// Version.
    #[arg(short, long, conflicts_with = "label")]
    pub version: Option<String>,
    /// `latest`.
    #[arg(short, long)]
    pub label: Option<String>,
}

/// Which deployment a file makes, and overrides of its fields.
#[derive(Debug, clap::Args)]
pub struct DeploymentTarget {
    /// The deployment's name (default: the file's).
    #[arg(short, long)]
    pub name: Option<String>,
    /// The endpoint's name (default: the file's).
    #[arg(short, long)]
    pub endpoint_name: Option<String>,
    /// Override a field of the file: --set instance_count=2 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// `berth online-endpoint ...`
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint from its YAML file.
    Create {
        /// The endpoint file.
        #[arg(short, long)]
        file: PathBuf,
        /// The endpoint's name (default: the file's).
        #[arg(short, long)]
        name: Option<String>,
        /// key or aml_token (default: the file's).
        #[arg(long)]
        auth_mode: Option<String>,
        /// Override a field of the file: --set tags.team=ml (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Show an endpoint (`--query scoring_uri -o tsv` prints its URI).
    Show {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
    /// List endpoints.
    List,
    /// Change the traffic split: --traffic "blue=90 green=10".
    Update {
        /// Name.
        #[arg(short, long)]
        name: String,
        /// Weights summing to 100 (or 0).
        #[arg(long, required_unless_present = "mirror_traffic")]
        traffic: Option<String>,
        /// Copy this share of live requests to one deployment and drop its answers: "green=10"
        /// (at most 50; "green=0" turns it off).
        #[arg(long)]
        mirror_traffic: Option<String>,
    },
    /// Send a request to the endpoint and print the answer.
    Invoke {
        /// Name.
        #[arg(short, long)]
        name: String,
        /// The JSON request body.
        #[arg(short, long)]
        request_file: PathBuf,
        /// Send it to this deployment, whatever the traffic split says.
        #[arg(short, long)]
        deployment_name: Option<String>,
    },
    /// Print the endpoint's keys.
    GetCredentials {
        /// Name.
        #[arg(short, long)]
        name: String,
    },
    /// Make a new primary or secondary key (the other keeps working).
    RegenerateKeys {
        /// Name.
        #[arg(short, long)]
        name: String,
        /// primary or secondary.
        #[arg(long, default_value = "primary")]
        key_type: String,
    },
    /// Delete an endpoint and its deployments.
    Delete {
        /// Name.
        #[arg(short, long)]
        name: String,
        /// Do not ask (accepted for az compatibility).
        #[arg(short, long)]
        yes: bool,
    },
}

/// `berth online-deployment ...`
#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment and wait until it is ready or failed.
    Create {
        /// The deployment file.
        #[arg(short, long)]
        file: PathBuf,
        #[command(flatten)]
        target: DeploymentTarget,
        /// Send all of the endpoint's traffic to it once ready.
        #[arg(long)]
        all_traffic: bool,
        /// Return at once instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Update a deployment with no downtime: new replicas start beside the serving ones and
    /// take over when ready. Without --file, --set changes the current revision's file
    /// (`--set instance_count=3`), keeping its code.
    Update {
        /// The deployment file.
        #[arg(short, long, required_unless_present = "set")]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: DeploymentTarget,
        /// Return at once instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a deployment.
    Show {
        /// Deployment name.
        #[arg(short, long)]
        name: String,
        /// Endpoint name.
        #[arg(short, long)]
        endpoint_name: String,
    },
    /// List an endpoint's deployments.
    List {
        /// Endpoint name.
        #[arg(short, long)]
        endpoint_name: String,
    },
    /// Print the replicas' logs.
    GetLogs {
        /// Deployment name.
        #[arg(short, long)]
        name: String,
        /// Endpoint name.
        #[arg(short, long)]
        endpoint_name: String,
        /// Lines per replica.
        #[arg(short, long, default_value_t = 100)]
        lines: usize,
    },
    /// Delete a deployment.
    Delete {
        /// Deployment name.
        #[arg(short, long)]
        name: String,
        /// Endpoint name.
        #[arg(short, long)]
        endpoint_name: String,
        /// Do not ask (accepted for az compatibility).
        #[arg(short, long)]
        yes: bool,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
