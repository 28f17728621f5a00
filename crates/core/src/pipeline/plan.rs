//! A pipeline made ready to run: each step turned into the job file its child job is made
//! from (an inline step as written; a component's command with its inputs bound, defaults
//! filled and `$[[...]]` resolved), checked whole; and, when a step's turn comes, that file
//! with its `${{parent...}}` bindings replaced by the pipeline's inputs and the paths of the
//! outputs earlier steps made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::binding::{self, Binding};
use super::graph::{self, Graph, GraphError};
use super::spec::{PipelineSpec, Settings, StepKind};
use super::steps::{absolute_map, binding_in, command_job, inline_job, pipeline_job, sweep_job};
use crate::spec::component::{ComponentSpec, is_data_type};

/// A step's component, found by the server: the spec, the folder its relative paths start
/// from, and how to name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The component.
    pub spec: ComponentSpec,
    /// Its folder.
    pub base_dir: String,
    /// `name:version`, or the file it came from.
    pub label: String,
}

/// One step, ready to be submitted once its inputs exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Command, sweep or pipeline.
    pub kind: StepKind,
    /// The child's job file, with `${{parent...}}` bindings still in its inputs and outputs.
    pub job: Value,
    /// The folder the file's relative paths start from.
    pub base_dir: String,
    /// Whether an earlier run with the same inputs may stand in for it.
    pub deterministic: bool,
    /// The component it runs, when it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// A checked pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The pipeline's inputs (local paths made absolute).
    pub inputs: BTreeMap<String, Value>,
    /// The pipeline's outputs as declared (local paths made absolute).
    pub outputs: BTreeMap<String, Value>,
    /// Settings.
    pub settings: Settings,
    /// Steps by name.
    pub steps: BTreeMap<String, PlannedStep>,
}

/// The wiring of a step's job file: for a sweep, its trial's inputs and the sweep's outputs.
fn wiring(step: &PlannedStep) -> Result<graph::Step, GraphError> {
    match step.kind {
        StepKind::Sweep => {
            let mut s = graph::step_of(&step.job["trial"])?;
            s.outputs = graph::step_of(&json!({"outputs": step.job["outputs"]}))?.outputs;
            s.output_bindings =
                graph::step_of(&json!({"outputs": step.job["outputs"]}))?.output_bindings;
            Ok(s)
        }
        _ => graph::step_of(&step.job),
    }
}

impl Plan {
    /// Turns a pipeline file into a plan: `components` holds each component step's resolved
    /// component, by step name. Every problem is named at once.
    pub fn build(
        spec: &PipelineSpec,
        base_dir: &str,
        components: &BTreeMap<String, Resolved>,
    ) -> Result<Plan, GraphError> {
        let mut errors = Vec::new();
        let mut steps = BTreeMap::new();
        for (name, step) in &spec.steps {
            let comp = components.get(name);
            let (job, base, deterministic) = match (step.kind, comp) {
                (StepKind::Command, Some(c)) if c.spec.kind == "pipeline" => (
                    pipeline_job(name, step, c, base_dir, &spec.settings, &mut errors),
                    c.base_dir.clone(),
                    c.spec.is_deterministic,
                ),
                (StepKind::Command, Some(c)) => (
                    command_job(name, step, c, base_dir, &mut errors),
                    c.base_dir.clone(),
                    c.spec.is_deterministic,
                ),
                (StepKind::Command, None) => {
                    (inline_job(step, base_dir), base_dir.to_string(), true)
                }
                (StepKind::Pipeline, Some(c)) => {
                    if c.spec.kind != "pipeline" {
                        errors.push(format!(
                            "step `{name}` is `type: pipeline` but component {} is a {} component",
                            c.label, c.spec.kind
                        ));
                    }
                    (
                        pipeline_job(name, step, c, base_dir, &spec.settings, &mut errors),
                        c.base_dir.clone(),
                        c.spec.is_deterministic,
                    )
                }
                (StepKind::Sweep, c) => (
                    sweep_job(name, step, c, base_dir, &mut errors),
                    c.map_or(base_dir.to_string(), |c| c.base_dir.clone()),
                    false,
                ),
                (StepKind::Pipeline, None) => {
                    errors.push(format!("step `{name}` needs a `component`"));
                    continue;
                }
            };
            let kind = match (step.kind, comp) {
                (StepKind::Command, Some(c)) if c.spec.kind == "pipeline" => StepKind::Pipeline,
                (k, _) => k,
            };
            steps.insert(
                name.clone(),
                PlannedStep {
                    kind,
                    job: Value::Object(job),
                    base_dir: base,
                    deterministic,
                    component: comp.map(|c| c.label.clone()),
                },
            );
        }
        let plan = Plan {
            inputs: absolute_map(&spec.inputs, base_dir),
            outputs: absolute_map(&spec.outputs, base_dir),
            settings: spec.settings.clone(),
            steps,
        };
        match plan.graph() {
            Ok(g) => {
                if let Err(GraphError(more)) = g.check() {
                    errors.extend(more);
                }
            }
            Err(GraphError(more)) => errors.extend(more),
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(GraphError(errors))
        }
    }

    /// The steps' wiring.
    pub fn graph(&self) -> Result<Graph, GraphError> {
        let mut errors = Vec::new();
        let mut steps = BTreeMap::new();
        for (name, step) in &self.steps {
            match wiring(step) {
                Ok(s) => {
                    steps.insert(name.clone(), s);
                }
                Err(GraphError(e)) => {
                    errors.extend(e.into_iter().map(|m| format!("step `{name}`, {m}")))
                }
            }
        }
        if !errors.is_empty() {
            return Err(GraphError(errors));
        }
        Ok(Graph {
            inputs: self.inputs.keys().cloned().collect(),
            outputs: self.outputs.keys().cloned().collect(),
            steps,
        })
    }

    /// Step `name`'s job file with every binding replaced: pipeline inputs by their values,
    /// other steps' outputs by `made[(step, output)] = (type, path)`, and outputs bound to a
    /// pipeline output with a `path` written there.
    pub fn materialize(
        &self,
        name: &str,
        made: &BTreeMap<(String, String), (String, String)>,
    ) -> Result<Value, String> {
        let step = self
            .steps
            .get(name)
            .ok_or_else(|| format!("no step `{name}`"))?;
        let mut job = step.job.clone();
        let inputs_at = match step.kind {
            StepKind::Sweep => job.get_mut("trial").and_then(|t| t.get_mut("inputs")),
            _ => job.get_mut("inputs"),
        };
        if let Some(Value::Object(inputs)) = inputs_at {
            for (input, v) in inputs.iter_mut() {
                let Some(text) = binding_in(v) else { continue };
                let b = binding::parse(&text)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("input `{input}` has no binding"))?;
                *v = self.bound_value(&b, v, made)?;
            }
        }
        if let Some(Value::Object(outputs)) = job.get_mut("outputs") {
            for v in outputs.values_mut() {
                if let Some(text) = v.as_str().filter(|t| t.contains("${{")) {
                    *v = json!({ "path": text });
                }
                let Some(m) = v.as_object_mut() else { continue };
                let Some(Ok(Some(Binding::ParentOutput(z)))) =
                    m.get("path").and_then(Value::as_str).map(binding::parse)
                else {
                    continue;
                };
                m.remove("path");
                if let Some(p) = self.outputs.get(&z).and_then(|o| o.get("path")) {
                    m.insert("path".into(), p.clone());
                }
                if let Some(mode) = self.outputs.get(&z).and_then(|o| o.get("mode")) {
                    m.entry("mode").or_insert(mode.clone());
                }
            }
        }
        Ok(job)
    }

    fn bound_value(
        &self,
        b: &Binding,
        at: &Value,
        made: &BTreeMap<(String, String), (String, String)>,
    ) -> Result<Value, String> {
        let declared = at.get("type").and_then(Value::as_str);
        match b {
            Binding::ParentInput(x) => {
                let v = self
                    .inputs
                    .get(x)
                    .ok_or_else(|| format!("the pipeline has no input `{x}`"))?;
                Ok(match (v, declared) {
                    (Value::Object(m), _) if m.contains_key("path") => {
                        let mut m = m.clone();
                        if let Some(t) = declared {
                            m.insert("type".into(), json!(t));
                        }
                        Value::Object(m)
                    }
                    (Value::Object(m), _) => m
                        .get("value")
                        .or_else(|| m.get("default"))
                        .cloned()
                        .unwrap_or(Value::Null),
                    (other, Some(t)) if is_data_type(t) => json!({"type": t, "path": other}),
                    (other, _) => other.clone(),
                })
            }
            Binding::StepOutput { step, output } => {
                let (kind, path) = made
                    .get(&(step.clone(), output.clone()))
                    .ok_or_else(|| format!("step `{step}` has not made output `{output}`"))?;
                let mut m = at.as_object().cloned().unwrap_or_default();
                m.insert("type".into(), json!(declared.unwrap_or(kind)));
                m.insert("path".into(), json!(path));
                Ok(Value::Object(m))
            }
            Binding::ParentOutput(z) => Err(format!("an input cannot read pipeline output `{z}`")),
        }
    }
}
