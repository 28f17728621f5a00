//! A pipeline job file (`pipelineJob.schema.json`) as Azure ML writes it: inputs, outputs,
//! settings and `jobs:`, each step an inline command job, a `component:` reference, a sweep or
//! a pipeline component. Read whole; the wiring is checked by [`super::plan`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::yaml::{Source, SpecError};

/// Pipeline-wide settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The compute of steps that name none (without `azureml:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_compute: Option<String>,
    /// The datastore of outputs that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_datastore: Option<String>,
    /// Whether independent steps go on after one fails (Azure ML's default: true).
    pub continue_on_step_failure: bool,
    /// Whether every step runs again instead of reusing an earlier run.
    #[serde(default)]
    pub force_rerun: bool,
}

/// What kind of job a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A command job.
    Command,
    /// A sweep job.
    Sweep,
    /// A pipeline component, run as a child pipeline.
    Pipeline,
}

/// Where a step's component comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ComponentRef {
    /// `azureml:<name>:<version>` or `azureml:<name>@latest`.
    Registered(String),
    /// A component file, relative to the pipeline file.
    File(String),
    /// The component written in place.
    Inline(Value),
}

impl ComponentRef {
    /// Reads a `component:` (or a sweep's `trial:`) value.
    pub fn of(v: &Value) -> Option<ComponentRef> {
        match v {
            Value::String(s) if s.starts_with("azureml:") => {
                Some(ComponentRef::Registered(s.clone()))
            }
            Value::String(s) => Some(ComponentRef::File(s.clone())),
            Value::Object(_) => Some(ComponentRef::Inline(v.clone())),
            _ => None,
        }
    }
}

/// One step as written.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSpec {
    /// Its kind.
    pub kind: StepKind,
    /// Its component, when it uses one (for a sweep: its trial, when that is a component).
    pub component: Option<ComponentRef>,
    /// Every other field, as written.
    pub fields: Map<String, Value>,
}

/// A pipeline file, read.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    /// Name.
    pub name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Experiment.
    pub experiment_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The pipeline's inputs: values (literals or `{type, path}` mappings).
    pub inputs: BTreeMap<String, Value>,
    /// The pipeline's outputs, as declared.
    pub outputs: BTreeMap<String, Value>,
    /// Settings, with `compute:` folded into `default_compute`.
    pub settings: Settings,
    /// Steps by name.
    pub steps: BTreeMap<String, StepSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    display_name: Option<String>,
    experiment_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Value>,
    compute: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, Value>,
    #[serde(default)]
    outputs: BTreeMap<String, Option<Value>>,
    #[serde(default)]
    settings: Option<RawSettings>,
    jobs: Option<BTreeMap<String, Value>>,
    identity: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    default_compute: Option<String>,
    default_datastore: Option<String>,
    continue_on_step_failure: Option<bool>,
    force_rerun: Option<bool>,
    default_environment: Option<Value>,
}

/// Strips the `azureml:` prefix of a compute or datastore.
fn bare(s: &str) -> String {
    s.trim().trim_start_matches("azureml:").to_string()
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Reads one step.
fn step_of(src: &Source<'_>, name: &str, v: &Value) -> Result<StepSpec, SpecError> {
    let at = |m: String| src.error_near(name, None, format!("step `{name}`: {m}"));
    let Value::Object(m) = v else {
        return Err(at("a step is a mapping of a job's fields".into()));
    };
    let mut fields = m.clone();
    let kind = match fields.remove("type").as_ref().map(text).as_deref() {
        None | Some("command") => StepKind::Command,
        Some("sweep") => StepKind::Sweep,
        Some("pipeline") => StepKind::Pipeline,
        Some(other @ ("parallel" | "spark" | "automl" | "data_transfer" | "import")) => {
            return Err(at(format!("`type: {other}` steps are not supported yet"))
                .hint("Berth runs command, sweep and pipeline steps"));
        }
        Some(other) => return Err(at(format!("`type: {other}` is not a step type"))),
    };
    let component = match kind {
        StepKind::Sweep => fields.get("trial").and_then(ComponentRef::of),
        _ => fields
            .remove("component")
            .as_ref()
            .and_then(ComponentRef::of),
    };
    match (kind, &component) {
        (StepKind::Command, None) if !fields.contains_key("command") => {
            Err(at("it has neither a `command` nor a `component`".into()))
        }
        (StepKind::Pipeline, None) => Err(at("a pipeline step needs a `component`".into())
            .hint("write the inner pipeline as a pipeline component file and name it")),
        (StepKind::Sweep, None) => Err(at("a sweep step needs a `trial`".into())),
        _ => Ok(StepSpec {
            kind,
            component,
            fields,
        }),
    }
}

impl PipelineSpec {
    /// Reads a pipeline file.
    pub fn parse(src: &Source<'_>) -> Result<PipelineSpec, SpecError> {
        let raw: RawPipeline = src.parse()?;
        if raw.kind != "pipeline" {
            return Err(src.error_near(
                "type",
                Some(&raw.kind),
                format!("type is `{}`, not `pipeline`", raw.kind),
            ));
        }
        if raw.identity.is_some() {
            return Err(src
                .error_near("identity", None, "`identity` is not supported yet")
                .hint("remove it; steps run with the server's access"));
        }
        let jobs = raw.jobs.filter(|j| !j.is_empty()).ok_or_else(|| {
            src.error_near("type", None, "a pipeline needs `jobs`, a mapping of steps")
        })?;
        let settings = raw.settings.map_or(
            Settings {
                continue_on_step_failure: true,
                ..Default::default()
            },
            |s| {
                let _ = s.default_environment;
                Settings {
                    default_compute: s.default_compute.as_deref().map(bare),
                    default_datastore: s.default_datastore.as_deref().map(bare),
                    continue_on_step_failure: s.continue_on_step_failure.unwrap_or(true),
                    force_rerun: s.force_rerun.unwrap_or(false),
                }
            },
        );
        let mut steps = BTreeMap::new();
        for (name, v) in &jobs {
            crate::names::validate_name("step", name).map_err(|m| src.error_near(name, None, m))?;
            steps.insert(name.clone(), step_of(src, name, v)?);
        }
        Ok(PipelineSpec {
            name: raw.name,
            display_name: raw.display_name,
            experiment_name: raw.experiment_name,
            description: raw.description,
            tags: raw.tags.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            inputs: raw.inputs,
            outputs: raw
                .outputs
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or(Value::Object(Map::new()))))
                .collect(),
            settings: Settings {
                default_compute: settings
                    .default_compute
                    .or_else(|| raw.compute.as_deref().map(bare)),
                ..settings
            },
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineSpec, SpecError> {
        PipelineSpec::parse(&Source::new("pipeline.yml", text))
    }

    #[test]
    fn azure_mls_hello_pipeline_io_reads_with_its_settings() {
        let p = parse(
            "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: hello_pipeline_io
settings:
  default_compute: azureml:cpu-cluster
jobs:
  hello_job:
    command: echo \"hello\" && echo \"world\" > ${{outputs.world_output}}/world.txt
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    outputs:
      world_output:
  world_job:
    command: cat ${{inputs.world_input}}/world.txt
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    inputs:
      world_input: ${{parent.jobs.hello_job.outputs.world_output}}
",
        )
        .unwrap();
        assert_eq!(p.settings.default_compute.as_deref(), Some("cpu-cluster"));
        assert!(p.settings.continue_on_step_failure);
        assert_eq!(p.steps["hello_job"].kind, StepKind::Command);
        assert!(p.steps["world_job"].fields.contains_key("inputs"));
    }

    #[test]
    fn component_references_of_every_form_are_told_apart() {
        let p = parse("type: pipeline\njobs:\n  a:\n    component: azureml:my_train@latest\n  b:\n    component: ./score.yml\n  c:\n    component:\n      command: echo\n").unwrap();
        assert_eq!(
            p.steps["a"].component,
            Some(ComponentRef::Registered("azureml:my_train@latest".into()))
        );
        assert_eq!(
            p.steps["b"].component,
            Some(ComponentRef::File("./score.yml".into()))
        );
        assert!(matches!(
            p.steps["c"].component,
            Some(ComponentRef::Inline(_))
        ));
    }

    #[test]
    fn a_step_with_nothing_to_run_and_an_unknown_type_are_named() {
        let e = parse("type: pipeline\njobs:\n  a:\n    inputs: {}\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("step `a`: it has neither a `command` nor a `component`"),
            "{e}"
        );
        let e = parse("type: pipeline\njobs:\n  a:\n    type: parallel\n    component: x.yml\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("`type: parallel` steps are not supported yet"),
            "{e}"
        );
    }
}
