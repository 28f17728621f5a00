//! Command jobs (`commandJob.schema.json`): parsed from YAML with positions into a validated spec.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::interpolate::{Reference, references};
use crate::names::validate_name;
use crate::spec::data::{JobInput, JobOutput, parse_input, parse_output};
use crate::yaml::{Source, SpecError};

/// Queue priority (`queue_settings.priority`); FIFO within a priority.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Runs after medium and high.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Runs first.
    High,
}

/// The job's environment: recorded on the local compute, used as the image on Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Environment {
    /// `azureml:<name>:<version>` or `azureml:<name>@latest`.
    Reference(String),
    /// An inline environment.
    Inline {
        /// Container image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        /// Conda file: a path as written, or the inline mapping.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conda_file: Option<Value>,
    },
}

/// A validated command job spec, as the user wrote it (paths not yet resolved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Name; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Experiment; defaults to the submitting folder's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The command, with `${{...}}` references.
    pub command: String,
    /// Code folder, as written (relative to the YAML file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Extra environment variables.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Compute name (without `azureml:`); `None` means `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// Instance type name; `None` means `defaultinstancetype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// `limits.timeout` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Queue priority.
    #[serde(default)]
    pub priority: Priority,
    /// Inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, JobInput>,
    /// Outputs by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, JobOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    // Checked by `refuse_other_job_types`: only `command` gets here.
    #[serde(rename = "type")]
    _kind: Option<IgnoredAny>,
    name: Option<Spanned<String>>,
    display_name: Option<String>,
    experiment_name: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Spanned<Value>>,
    command: Option<Spanned<String>>,
    code: Option<Spanned<String>>,
    environment: Option<Spanned<Value>>,
    #[serde(default)]
    environment_variables: BTreeMap<String, Spanned<Value>>,
    compute: Option<Spanned<String>>,
    resources: Option<RawResources>,
    limits: Option<RawLimits>,
    queue_settings: Option<RawQueue>,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    outputs: BTreeMap<String, Spanned<Option<Value>>>,
    // Azure ML fields Berth knows and does not support yet: rejected by name below.
    distribution: Option<Spanned<IgnoredAny>>,
    services: Option<Spanned<IgnoredAny>>,
    identity: Option<Spanned<IgnoredAny>>,
    properties: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    instance_type: Option<Spanned<String>>,
    instance_count: Option<Spanned<u32>>,
    shm_size: Option<Spanned<IgnoredAny>>,
    docker_args: Option<Spanned<IgnoredAny>>,
    locations: Option<Spanned<IgnoredAny>>,
    properties: Option<Spanned<IgnoredAny>>,
    max_instance_count: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    priority: Option<Spanned<String>>,
    job_tier: Option<Spanned<IgnoredAny>>,
}

fn unsupported(
    src: &Source<'_>,
    field: &str,
    at: &Option<Spanned<IgnoredAny>>,
) -> Result<(), SpecError> {
    match at {
        Some(at) => Err(src
            .error_at(at, format!("`{field}` is not supported yet"))
            .hint("remove it; Berth runs single-node command jobs today")),
        None => Ok(()),
    }
}

/// Renders a YAML scalar as the string a command or environment sees.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The image a job without an environment image runs in.
pub const DEFAULT_IMAGE: &str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest";

/// The image a job runs in: its environment's image, Azure's curated image for an
/// `azureml:AzureML-...` reference, else [`DEFAULT_IMAGE`].
pub fn image_for(environment: Option<&Environment>) -> String {
    match environment {
        Some(Environment::Inline {
            image: Some(image), ..
        }) => image.clone(),
        Some(Environment::Reference(r)) => {
            let bare = r.trim_start_matches("azureml:");
            let name = bare.split(['@', ':']).next().unwrap_or(bare);
            match name.strip_prefix("AzureML-") {
                Some(curated) => format!(
                    "mcr.microsoft.com/azureml/curated/{}:latest",
                    curated.to_ascii_lowercase()
                ),
                None => DEFAULT_IMAGE.into(),
            }
        }
        _ => DEFAULT_IMAGE.into(),
    }
}

/// Strips the `azureml:` prefix of a reference.
pub fn strip_azureml(s: &str) -> &str {
    s.strip_prefix("azureml:").unwrap_or(s)
}

/// Fields of Azure ML's other job types: a file with one is a real Azure ML job of that type,
/// refused as such instead of as a typo.
const OTHER_JOB_FIELDS: &[(&str, &str)] = &[
    ("trial", "sweep"),
    ("search_space", "sweep"),
    ("sampling_algorithm", "sweep"),
    ("objective", "sweep"),
    ("early_termination", "sweep"),
    ("jobs", "pipeline"),
    ("settings", "pipeline"),
    ("mini_batch_size", "parallel"),
    ("retry_settings", "parallel"),
    ("mini_batch_error_threshold", "parallel"),
    ("input_data", "parallel"),
    ("primary_metric", "automl"),
    ("target_column_name", "automl"),
    ("training_data", "automl"),
    ("featurization", "automl"),
    ("entry", "spark"),
    ("conf", "spark"),
    ("py_files", "spark"),
];

/// Just the job's type and top-level keys, read before the strict parse.
#[derive(Deserialize)]
struct JobShape {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(flatten)]
    rest: BTreeMap<String, Spanned<IgnoredAny>>,
}

/// The `type:` a job file gives (`None`: no type, a command job), for choosing its parser;
/// `None` too when the file does not parse (the parser then says why).
pub fn job_type(yaml: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_saphyr::from_str::<Shape>(yaml).ok()?.kind
}

fn refuse_other_job_types(src: &Source<'_>) -> Result<(), SpecError> {
    let Ok(shape) = src.parse::<JobShape>() else {
        // The strict parse reports what is wrong with the file.
        return Ok(());
    };
    if let Some(k) = &shape.kind
        && k.value != "command"
    {
        let msg = match k.value.as_str() {
            "sweep" | "pipeline" | "automl" | "spark" | "parallel" => {
                format!("`type: {}` jobs are not supported yet", k.value)
            }
            other => format!("`type: {other}` is not a job type"),
        };
        return Err(src.error_at(k, msg).hint("Berth runs `type: command` jobs"));
    }
    for (field, job_type) in OTHER_JOB_FIELDS {
        if let Some(at) = shape.rest.get(*field) {
            let mut e = src.error_at(
                at,
                format!(
                    "`{field}` is a {job_type} job field; {job_type} jobs are not supported yet"
                ),
            );
            if e.position.is_none() {
                e.position = src.locate(field, None);
            }
            return Err(e.hint("Berth runs `type: command` jobs"));
        }
    }
    Ok(())
}

impl JobSpec {
    /// Parses and validates a command job file. A file of another Azure ML job type is refused
    /// as such before any unknown-field error.
    pub fn parse(src: &Source<'_>) -> Result<JobSpec, SpecError> {
        refuse_other_job_types(src)?;
        let raw: RawJob = src.parse()?;
        raw.validate(src)
    }

    /// Checks that every `${{...}}` in the command names an input or output.
    pub fn check_references(&self) -> Result<(), String> {
        let refs = references(&self.command).map_err(|e| e.to_string())?;
        for r in refs {
            let known = match &r {
                Reference::Input(n) => self.inputs.contains_key(n),
                Reference::Output(n) => self.outputs.contains_key(n),
                Reference::Other(_) => false,
            };
            if !known {
                let defined = match &r {
                    Reference::Input(_) => names(self.inputs.keys()),
                    Reference::Output(_) => names(self.outputs.keys()),
                    Reference::Other(_) => {
                        "only inputs.<name> and outputs.<name> may be used".into()
                    }
                };
                return Err(format!(
                    "the command refers to `${{{{{}}}}}`, which the job does not define ({defined})",
                    r.text()
                ));
            }
        }
        Ok(())
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<_> = keys.map(|k| format!("`{k}`")).collect();
    if v.is_empty() {
        "it defines none".into()
    } else {
        format!("it defines {}", v.join(", "))
    }
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    match s {
        "low" => Ok(Priority::Low),
        "medium" => Ok(Priority::Medium),
        "high" => Ok(Priority::High),
        other => Err(format!(
            "`{other}` is not a priority; use low, medium or high"
        )),
    }
}

fn string_map(
    src: &Source<'_>,
    what: &str,
    m: BTreeMap<String, Spanned<Value>>,
) -> Result<BTreeMap<String, String>, SpecError> {
    m.into_iter()
        .map(|(k, v)| match scalar_text(&v.value) {
            Some(s) => Ok((k, s)),
            None if v.value.is_null() => Ok((k, String::new())),
            None => Err(src.error_at(
                &v,
                format!("{what} `{k}` must be a string, number or boolean"),
            )),
        })
        .collect()
}

impl RawResources {
    /// The instance type; fields of Azure's managed computes are refused by name.
    fn instance_type(self, src: &Source<'_>) -> Result<Option<String>, SpecError> {
        unsupported(src, "resources.shm_size", &self.shm_size)?;
        unsupported(src, "resources.docker_args", &self.docker_args)?;
        unsupported(src, "resources.locations", &self.locations)?;
        unsupported(src, "resources.properties", &self.properties)?;
        unsupported(
            src,
            "resources.max_instance_count",
            &self.max_instance_count,
        )?;
        if let Some(c) = &self.instance_count
            && c.value != 1
        {
            return Err(src
                .error_at(
                    c,
                    "`resources.instance_count` other than 1 is not supported yet",
                )
                .hint("multi-node jobs come with distributed training"));
        }
        Ok(self.instance_type.map(|t| t.value))
    }
}

impl RawQueue {
    fn priority(self, src: &Source<'_>) -> Result<Priority, SpecError> {
        unsupported(src, "queue_settings.job_tier", &self.job_tier)?;
        match &self.priority {
            Some(p) => parse_priority(&p.value).map_err(|m| src.error_at(p, m)),
            None => Ok(Priority::default()),
        }
    }
}

fn parse_inputs(
    src: &Source<'_>,
    raw: BTreeMap<String, Spanned<Value>>,
) -> Result<BTreeMap<String, JobInput>, SpecError> {
    let mut inputs = BTreeMap::new();
    for (k, v) in raw {
        validate_name("input", &k).map_err(|m| src.error_at(&v, m))?;
        let input = parse_input(&k, &v.value).map_err(|m| src.error_at(&v, m))?;
        inputs.insert(k, input);
    }
    Ok(inputs)
}

fn parse_outputs(
    src: &Source<'_>,
    raw: BTreeMap<String, Spanned<Option<Value>>>,
) -> Result<BTreeMap<String, JobOutput>, SpecError> {
    let mut outputs = BTreeMap::new();
    for (k, v) in raw {
        validate_name("output", &k).map_err(|m| src.error_at(&v, m))?;
        let output = parse_output(&k, v.value.as_ref()).map_err(|m| src.error_at(&v, m))?;
        outputs.insert(k, output);
    }
    Ok(outputs)
}

impl RawJob {
    fn validate(self, src: &Source<'_>) -> Result<JobSpec, SpecError> {
        unsupported(src, "distribution", &self.distribution)?;
        unsupported(src, "services", &self.services)?;
        unsupported(src, "identity", &self.identity)?;
        unsupported(src, "properties", &self.properties)?;
        let instance_type = self
            .resources
            .map(|r| r.instance_type(src))
            .transpose()?
            .flatten();
        let priority = match self.queue_settings {
            Some(q) => q.priority(src)?,
            None => Priority::default(),
        };
        let timeout_seconds = match self.limits.and_then(|l| l.timeout) {
            Some(t) if t.value <= 0 => {
                return Err(
                    src.error_at(&t, "`limits.timeout` must be a positive number of seconds")
                );
            }
            Some(t) => Some(t.value as u64),
            None => None,
        };
        let name = match self.name {
            Some(n) => {
                validate_name("job", &n.value).map_err(|m| src.error_at(&n, m))?;
                Some(n.value)
            }
            None => None,
        };
        if let Some(e) = &self.experiment_name {
            validate_name("experiment", &e.value).map_err(|m| src.error_at(e, m))?;
        }
        let command = self.command.ok_or_else(|| {
            SpecError::new(format!("{}: the job has no `command`", src.name))
                .hint("add `command: python train.py` or similar")
        })?;
        if command.value.trim().is_empty() {
            return Err(src.error_at(&command, "`command` is empty"));
        }
        let environment = self
            .environment
            .map(|e| parse_environment(src, e))
            .transpose()?;
        let inputs = parse_inputs(src, self.inputs)?;
        let outputs = parse_outputs(src, self.outputs)?;
        let spec = JobSpec {
            name,
            display_name: self.display_name,
            experiment_name: self.experiment_name.map(|e| e.value),
            description: self.description,
            tags: string_map(src, "tag", self.tags)?,
            command: command.value.clone(),
            code: self.code.map(|c| c.value),
            environment,
            environment_variables: string_map(
                src,
                "environment variable",
                self.environment_variables,
            )?,
            compute: self.compute.map(|c| strip_azureml(&c.value).to_string()),
            instance_type,
            timeout_seconds,
            priority,
            inputs,
            outputs,
        };
        spec.check_references()
            .map_err(|m| src.error_at(&command, m))?;
        Ok(spec)
    }
}

pub(crate) fn parse_environment(
    src: &Source<'_>,
    e: Spanned<Value>,
) -> Result<Environment, SpecError> {
    let shape = "`environment` must be `azureml:<name>:<version>` or a mapping with `image` and/or `conda_file`";
    match &e.value {
        Value::String(s) if s.starts_with("azureml:") && s.len() > "azureml:".len() => {
            Ok(Environment::Reference(s.clone()))
        }
        Value::Object(m) => {
            let mut image = None;
            let mut conda_file = None;
            for (k, v) in m {
                match k.as_str() {
                    "image" => {
                        image = Some(
                            v.as_str()
                                .ok_or_else(|| {
                                    src.error_at(&e, "`environment.image` must be a string")
                                })?
                                .to_string(),
                        )
                    }
                    "conda_file" => conda_file = Some(v.clone()),
                    "name" | "version" | "description" | "tags" | "os_type" => {}
                    "build" | "inference_config" => {
                        return Err(src
                            .error_at(&e, format!("`environment.{k}` is not supported yet"))
                            .hint("give an `image` or a `conda_file`"));
                    }
                    other => {
                        return Err(src
                            .error_at(&e, format!("unknown field `{other}` in `environment`"))
                            .hint(shape));
                    }
                }
            }
            if image.is_none() && conda_file.is_none() {
                return Err(src
                    .error_at(&e, "`environment` has neither `image` nor `conda_file`")
                    .hint(shape));
            }
            Ok(Environment::Inline { image, conda_file })
        }
        _ => Err(src.error_at(&e, shape)),
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
