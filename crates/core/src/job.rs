//! A job's life: Azure ML's status names, the state each carries, and the record that is stored.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use std::collections::BTreeMap;

use crate::spec::data::{DataType, InputMode};
use crate::spec::instance_type::InstanceType;
use crate::spec::job::JobSpec;

/// An input with its path resolved at submission (datastores and relative paths made absolute).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedInput {
    /// A literal value.
    Literal {
        /// The value.
        value: String,
    },
    /// A file or folder on the server's machine.
    Path {
        /// Absolute path.
        path: String,
        /// File or folder.
        data_type: DataType,
        /// How the job sees it.
        mode: InputMode,
    },
    /// An http(s) URL, fetched while the job is prepared.
    Url {
        /// The URL.
        url: String,
        /// File or folder.
        data_type: DataType,
        /// How the job sees it.
        mode: InputMode,
    },
}

/// The file name an input URL is downloaded to: its last path segment, without query or
/// fragment; `data` when there is none.
pub fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| rest);
    match path.split_once('/') {
        Some((_, p)) => p
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("data"),
        None => "data",
    }
}

/// Azure ML's name for the output that holds a job's artifacts: what its command wrote to
/// `./outputs` and `./logs` (unless the job names an output of its own so).
pub const ARTIFACTS_OUTPUT: &str = "default";

/// An output with the absolute path the job writes it to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedOutput {
    /// Absolute path.
    pub path: String,
    /// File or folder.
    pub data_type: DataType,
}

/// Azure ML's job status names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Accepted, not yet queued.
    NotStarted,
    /// Waiting for capacity.
    Queued,
    /// Inputs being resolved, working folder being made.
    Preparing,
    /// The command is running.
    Running,
    /// Outputs being collected.
    Finalizing,
    /// Finished with exit code 0.
    Completed,
    /// Finished otherwise.
    Failed,
    /// Canceled by a person.
    Canceled,
}

impl JobStatus {
    /// The statuses of a job that has not ended.
    pub const ACTIVE: [JobStatus; 5] = [
        JobStatus::NotStarted,
        JobStatus::Queued,
        JobStatus::Preparing,
        JobStatus::Running,
        JobStatus::Finalizing,
    ];

    /// Every status's name.
    pub fn all_names() -> [&'static str; 8] {
        [
            JobStatus::NotStarted,
            JobStatus::Queued,
            JobStatus::Preparing,
            JobStatus::Running,
            JobStatus::Finalizing,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Canceled,
        ]
        .map(JobStatus::as_str)
    }

    /// The names of [`JobStatus::ACTIVE`], as the store filters by them.
    pub fn active_names() -> [&'static str; 5] {
        JobStatus::ACTIVE.map(JobStatus::as_str)
    }

    /// True for Completed, Failed and Canceled.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// The name as Azure ML spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::NotStarted => "NotStarted",
            JobStatus::Queued => "Queued",
            JobStatus::Preparing => "Preparing",
            JobStatus::Running => "Running",
            JobStatus::Finalizing => "Finalizing",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Canceled => "Canceled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed, in a form scripts can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The command exited non-zero or was killed by a signal.
    NonZeroExit,
    /// The process tree used more memory than the instance type's limit.
    OOMKilled,
    /// `limits.timeout` passed.
    DeadlineExceeded,
    /// The request can never fit the compute.
    Unschedulable,
    /// Inputs or the working folder could not be prepared.
    PreparationFailed,
    /// The process could not be started.
    StartFailed,
    /// The server stopped while the job ran and could not re-attach to it.
    ServerRestarted,
    /// A sweep's trials gave no result (none logged the primary metric, or one could not be
    /// submitted).
    SweepFailed,
    /// A pipeline step failed.
    StepFailed,
}

/// The job's state; each carries the data that state has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum JobState {
    /// Accepted.
    NotStarted,
    /// Waiting for capacity (the reason is computed live by the scheduler).
    Queued,
    /// Being prepared.
    Preparing {
        /// When admission happened.
        #[serde(with = "time::serde::rfc3339")]
        admitted_at: OffsetDateTime,
        /// GPUs assigned (UUIDs or indices).
        #[serde(default)]
        gpus: Vec<String>,
        /// A note from admission (e.g. started ahead of a larger job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Running.
    Running {
        /// When the command started.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        /// GPUs assigned.
        #[serde(default)]
        gpus: Vec<String>,
        /// The supervising process.
        supervisor_pid: u32,
        /// A note from admission (e.g. started ahead of a larger job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Collecting outputs.
    Finalizing {
        /// When the command started.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        /// Exit code of the command.
        exit_code: i32,
    },
    /// Finished successfully.
    Completed {
        /// When the command started.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        /// When it ended.
        #[serde(with = "time::serde::rfc3339")]
        ended_at: OffsetDateTime,
    },
    /// Finished unsuccessfully.
    Failed {
        /// When the command started, if it did.
        #[serde(default, with = "time::serde::rfc3339::option")]
        started_at: Option<OffsetDateTime>,
        /// When it ended.
        #[serde(with = "time::serde::rfc3339")]
        ended_at: OffsetDateTime,
        /// Exit code, when the command ran and exited.
        #[serde(default)]
        exit_code: Option<i32>,
        /// Category.
        kind: FailureKind,
        /// What happened and what to do.
        message: String,
    },
    /// Canceled.
    Canceled {
        /// When the command started, if it did.
        #[serde(default, with = "time::serde::rfc3339::option")]
        started_at: Option<OffsetDateTime>,
        /// When it ended.
        #[serde(with = "time::serde::rfc3339")]
        ended_at: OffsetDateTime,
    },
}

impl JobState {
    /// The status name of this state.
    pub const fn status(&self) -> JobStatus {
        match self {
            JobState::NotStarted => JobStatus::NotStarted,
            JobState::Queued => JobStatus::Queued,
            JobState::Preparing { .. } => JobStatus::Preparing,
            JobState::Running { .. } => JobStatus::Running,
            JobState::Finalizing { .. } => JobStatus::Finalizing,
            JobState::Completed { .. } => JobStatus::Completed,
            JobState::Failed { .. } => JobStatus::Failed,
            JobState::Canceled { .. } => JobStatus::Canceled,
        }
    }

    /// When the command started, if it has.
    pub fn started_at(&self) -> Option<OffsetDateTime> {
        match self {
            JobState::Running { started_at, .. }
            | JobState::Finalizing { started_at, .. }
            | JobState::Completed { started_at, .. } => Some(*started_at),
            JobState::Failed { started_at, .. } | JobState::Canceled { started_at, .. } => {
                *started_at
            }
            _ => None,
        }
    }

    /// When the job ended, if it has.
    pub fn ended_at(&self) -> Option<OffsetDateTime> {
        match self {
            JobState::Completed { ended_at, .. }
            | JobState::Failed { ended_at, .. }
            | JobState::Canceled { ended_at, .. } => Some(*ended_at),
            _ => None,
        }
    }
}

/// Everything stored about a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unique name.
    pub name: String,
    /// The spec as submitted (with overrides applied and the name filled in).
    pub spec: JobSpec,
    /// Display name (defaults to the name).
    pub display_name: String,
    /// Experiment (defaults to the submitting folder's name).
    pub experiment_name: String,
    /// Compute name.
    pub compute: String,
    /// The instance type as it was at submission.
    pub instance_type: InstanceType,
    /// The folder the YAML file was in, for relative paths.
    pub base_dir: String,
    /// The job's own folder (code snapshot, logs, default outputs).
    pub workdir: String,
    /// Inputs, resolved.
    pub inputs: BTreeMap<String, ResolvedInput>,
    /// Outputs, resolved.
    pub outputs: BTreeMap<String, ResolvedOutput>,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Current state.
    pub state: JobState,
    /// What a pod of a Kubernetes job presents to upload its outputs to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_token: Option<String>,
    /// The environment, resolved at submission (`None`: the machine's interpreter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::spec::environment::ResolvedEnvironment>,
    /// The job's MLflow run: where its script logs to, and with what token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<JobTracking>,
    /// The sweep or pipeline this job is a step or trial of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_name: Option<String>,
    /// For a sweep job: what it is and how far it got. Such a job runs no command of its own:
    /// the server's sweep driver runs its trials as child jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepRun>,
    /// For a pipeline job: its plan and its steps' progress. Such a job runs no command of its
    /// own: the server's pipeline driver runs its steps as child jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineRun>,
    /// Archived (`job archive`): left out of lists unless asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// Its code snapshot and outputs were removed by retention (its record and logs stay).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pruned: bool,
    /// A cancel was asked for while it was starting or running: kept so that a server
    /// restarted before the job stopped still stops it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
}

impl JobRecord {
    /// Whether the server drives it (a sweep or a pipeline) instead of running a command.
    pub fn is_driven(&self) -> bool {
        self.sweep.is_some() || self.pipeline.is_some()
    }
}

/// A pipeline job's plan and progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PipelineRun {
    /// The pipeline file's name, for messages.
    pub file: String,
    /// Its steps, made ready at submission.
    pub plan: crate::pipeline::plan::Plan,
    /// Each step's progress.
    #[serde(default)]
    pub steps: BTreeMap<String, StepRun>,
}

/// One pipeline step's progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRun {
    /// Where it is.
    pub state: crate::pipeline::run::StepState,
    /// Its child job, once submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The child's status as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The earlier job whose outputs stand in for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// Its reuse key, when it may be reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<String>,
    /// Why it could not be submitted, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The outputs it made (its own, or those of the job it reused), once done: the steps
    /// after it bind to them without reading that job again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, ResolvedOutput>>,
}

/// A sweep job's file and progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SweepRun {
    /// The sweep file's name, for messages.
    pub file: String,
    /// The sweep file as submitted (read again by the driver after a restart).
    pub yaml: String,
    /// The trials started so far, in order.
    #[serde(default)]
    pub trials: Vec<SweepTrial>,
    /// Trials stopped by the early termination policy.
    #[serde(default)]
    pub stopped_early: Vec<String>,
    /// The best trial so far and its primary metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<(String, f64)>,
}

/// One trial of a sweep.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepTrial {
    /// The child job.
    pub name: String,
    /// Its parameters.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// What a job's command needs to log to its own MLflow run on the server, as Azure ML sets
/// it: `MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_TOKEN`, `MLFLOW_EXPERIMENT_ID`/`_NAME` and
/// `MLFLOW_RUN_ID` (the job's name).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobTracking {
    /// The server's API, as a local job reaches it (a cluster's pods use the cluster's
    /// `server_url` instead).
    pub local_uri: String,
    /// The job's own token: it opens the job's runs and nothing else.
    pub token: String,
    /// The run's experiment.
    pub experiment_id: String,
}

impl JobRecord {
    /// The `MLFLOW_*` variables of a job on this machine's compute.
    pub fn local_tracking_env(&self, env: &mut BTreeMap<String, String>) {
        if let Some(t) = &self.tracking {
            self.tracking_env(&t.local_uri, env);
        }
    }

    /// The `MLFLOW_*` variables of the job's command, with the server at `uri`; none when the
    /// job has no run. A variable the job file sets itself is left as it is.
    pub fn tracking_env(&self, uri: &str, env: &mut BTreeMap<String, String>) {
        let Some(t) = &self.tracking else {
            return;
        };
        for (k, v) in [
            ("MLFLOW_TRACKING_URI", uri),
            ("MLFLOW_TRACKING_TOKEN", &t.token),
            ("MLFLOW_EXPERIMENT_ID", &t.experiment_id),
            ("MLFLOW_EXPERIMENT_NAME", &self.experiment_name),
            ("MLFLOW_RUN_ID", &self.name),
        ] {
            env.entry(k.into()).or_insert_with(|| v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_file_name;

    #[test]
    fn a_url_is_downloaded_to_its_last_segment() {
        assert_eq!(
            url_file_name("https://h/d/train.csv?sig=a/b#x"),
            "train.csv"
        );
        assert_eq!(url_file_name("https://h/d/"), "data");
        assert_eq!(url_file_name("https://h"), "data");
        assert_eq!(url_file_name("https://h/?q=1"), "data");
    }
}
