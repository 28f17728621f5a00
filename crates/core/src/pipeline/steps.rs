//! Each step of a pipeline made the job file of its child: an inline command step as written
//! (its local paths made absolute); a component's command with the step's inputs bound,
//! defaults filled, `$[[...]]` resolved and its outputs typed; a sweep whose trial is a
//! component; a pipeline component as a child pipeline. Problems are collected, not returned
//! at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::optional;
use super::plan::Resolved;
use super::spec::{Settings, StepKind, StepSpec};
use crate::spec::component::{fits, is_data_type};

/// A local path made absolute against `base`; URLs, datastore and asset paths as written.
pub fn absolute(path: &str, base: &str) -> String {
    if path.contains("://") || path.starts_with("azureml:") || path.contains("${{") {
        return path.to_string();
    }
    let mut local = path
        .strip_prefix("file://")
        .or_else(|| path.strip_prefix("file:"))
        .unwrap_or(path);
    while let Some(rest) = local.strip_prefix("./") {
        local = rest;
    }
    Path::new(base).join(local).to_string_lossy().into_owned()
}

/// A `{type, path, mode}` value with its local path made absolute.
fn absolute_value(v: &Value, base: &str) -> Value {
    match v {
        Value::Object(m) if m.get("path").and_then(Value::as_str).is_some() => {
            let mut m = m.clone();
            let p = absolute(m["path"].as_str().unwrap_or_default(), base);
            m.insert("path".into(), json!(p));
            Value::Object(m)
        }
        other => other.clone(),
    }
}

pub(crate) fn absolute_map(m: &BTreeMap<String, Value>, base: &str) -> BTreeMap<String, Value> {
    m.iter()
        .map(|(k, v)| (k.clone(), absolute_value(v, base)))
        .collect()
}

/// The step fields that override the component's.
const STEP_FIELDS: &[&str] = &[
    "compute",
    "environment",
    "resources",
    "limits",
    "queue_settings",
    "display_name",
    "description",
    "tags",
    "services",
    "distribution",
    "identity",
];

/// The binding a step's value holds, if any (`"${{...}}"` or `{path: "${{...}}"}`).
pub(crate) fn binding_in(v: &Value) -> Option<String> {
    let t = v
        .as_str()
        .or_else(|| v.get("path").and_then(Value::as_str))?;
    t.contains("${{").then(|| t.to_string())
}

/// Binds a component's inputs from the step's `inputs:`; all problems at once.
fn bind_inputs(
    step: &str,
    comp: &Resolved,
    given: Option<&Value>,
    pipeline_base: &str,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let given = given
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for name in given.keys() {
        if !comp.spec.inputs.contains_key(name) {
            errors.push(format!(
                "step `{step}`: component {} has no input `{name}` (it has: {})",
                comp.label,
                comp.spec
                    .inputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for (name, decl) in &comp.spec.inputs {
        let data = is_data_type(&decl.kind);
        let value = match given.get(name).filter(|v| !v.is_null()) {
            Some(v) if binding_in(v).is_some() => {
                if data {
                    let mut m = v.as_object().cloned().unwrap_or_default();
                    m.insert("type".into(), json!(decl.kind));
                    m.insert("path".into(), json!(binding_in(v)));
                    Value::Object(m)
                } else {
                    v.clone()
                }
            }
            Some(v) if data => {
                let mut m = match v {
                    Value::Object(m) => m.clone(),
                    other => {
                        let mut m = Map::new();
                        m.insert("path".into(), other.clone());
                        m
                    }
                };
                if let Some(t) = m.get("type").and_then(Value::as_str)
                    && t != decl.kind
                {
                    errors.push(format!(
                        "step `{step}`, input `{name}` is a {} but the component declares a {t}",
                        decl.kind
                    ));
                }
                m.insert("type".into(), json!(decl.kind));
                absolute_value(&Value::Object(m), pipeline_base)
            }
            Some(v) => {
                let v = v.get("value").or_else(|| v.get("default")).unwrap_or(v);
                if !fits(&decl.kind, v) {
                    errors.push(format!(
                        "step `{step}`, input `{name}`: {v} is not a{} {}",
                        if decl.kind == "integer" { "n" } else { "" },
                        decl.kind
                    ));
                }
                v.clone()
            }
            None => match &decl.default {
                Some(d) if data => {
                    absolute_value(&json!({"type": decl.kind, "path": d}), &comp.base_dir)
                }
                Some(d) => d.clone(),
                None if decl.optional => continue,
                None => {
                    errors.push(format!(
                        "step `{step}`: input `{name}` of component {} is required and not bound; bind it under the step's `inputs:` or give it a default",
                        comp.label
                    ));
                    continue;
                }
            },
        };
        out.insert(name.clone(), value);
    }
    out
}

/// Binds a component's outputs from the step's `outputs:`.
fn bind_outputs(
    step: &str,
    comp: &Resolved,
    given: Option<&Value>,
    pipeline_base: &str,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let given = given
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for name in given.keys() {
        if !comp.spec.outputs.contains_key(name) {
            errors.push(format!(
                "step `{step}`: component {} has no output `{name}` (it has: {})",
                comp.label,
                comp.spec
                    .outputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    comp.spec
        .outputs
        .iter()
        .map(|(name, decl)| {
            let mut m = match given.get(name) {
                Some(Value::Object(m)) => absolute_value(&Value::Object(m.clone()), pipeline_base)
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                Some(Value::String(s)) => {
                    let mut m = Map::new();
                    m.insert("path".into(), json!(s));
                    m
                }
                _ => Map::new(),
            };
            m.insert("type".into(), json!(decl.kind));
            (name.clone(), Value::Object(m))
        })
        .collect()
}

/// A command component step's job file.
pub(crate) fn command_job(
    name: &str,
    step: &StepSpec,
    comp: &Resolved,
    pipeline_base: &str,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let mut job = comp.spec.body.clone();
    job.insert("type".into(), json!("command"));
    let inputs = bind_inputs(name, comp, step.fields.get("inputs"), pipeline_base, errors);
    let given: BTreeSet<String> = inputs.keys().cloned().collect();
    match optional::resolve(comp.spec.command().unwrap_or_default(), &given) {
        Ok(c) => {
            job.insert("command".into(), json!(c));
        }
        Err(e) => errors.push(format!("step `{name}`: component {}: {e}", comp.label)),
    }
    job.insert("inputs".into(), Value::Object(inputs));
    job.insert(
        "outputs".into(),
        Value::Object(bind_outputs(
            name,
            comp,
            step.fields.get("outputs"),
            pipeline_base,
            errors,
        )),
    );
    if let Some(d) = &comp.spec.display_name {
        job.insert("display_name".into(), json!(d));
    }
    for f in STEP_FIELDS {
        if let Some(v) = step.fields.get(*f) {
            job.insert(f.to_string(), v.clone());
        }
    }
    if let Some(Value::Object(extra)) = step.fields.get("environment_variables") {
        let mut vars = job
            .get("environment_variables")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        vars.extend(extra.clone());
        job.insert("environment_variables".into(), Value::Object(vars));
    }
    let known: BTreeSet<&str> = STEP_FIELDS
        .iter()
        .copied()
        .chain(["inputs", "outputs", "environment_variables", "name"])
        .collect();
    for f in step.fields.keys() {
        if !known.contains(f.as_str()) {
            errors.push(format!(
                "step `{name}`: `{f}` cannot be set on a step that uses a component (set it in the component)"
            ));
        }
    }
    job
}

/// An inline command step's job file, with its local paths made absolute.
pub(crate) fn inline_job(step: &StepSpec, pipeline_base: &str) -> Map<String, Value> {
    let mut job = step.fields.clone();
    job.insert("type".into(), json!("command"));
    for key in ["inputs", "outputs"] {
        if let Some(Value::Object(m)) = job.get(key) {
            let m: Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), absolute_value(v, pipeline_base)))
                .collect();
            job.insert(key.into(), Value::Object(m));
        }
    }
    job
}

/// A sweep's trial that is a component, made the command job its trials run: `inputs` bind
/// the component's inputs, those named in the search space become `${{search_space.<name>}}`
/// in the command, and its code and conda file are named by absolute path (the trials start
/// from the sweep's folder, not the component's).
pub fn component_trial(
    name: &str,
    comp: &Resolved,
    inputs: Option<&Value>,
    outputs: Option<&Value>,
    space: &BTreeSet<String>,
    base: &str,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let mut bound = inputs
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for p in space {
        bound.insert(p.clone(), json!(format!("${{{{search_space.{p}}}}}")));
    }
    let trial_step = StepSpec {
        kind: StepKind::Command,
        component: None,
        fields: [
            ("inputs".to_string(), Value::Object(bound)),
            (
                "outputs".to_string(),
                outputs.cloned().unwrap_or(Value::Null),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let mut trial = command_job(name, &trial_step, comp, base, errors);
    // The sweep fills its parameters into the command itself.
    let mut command = trial["command"].as_str().unwrap_or_default().to_string();
    if let Some(Value::Object(inputs)) = trial.get_mut("inputs") {
        for p in space {
            inputs.remove(p);
            for form in [
                format!("${{{{inputs.{p}}}}}"),
                format!("${{{{ inputs.{p} }}}}"),
            ] {
                command = command.replace(&form, &format!("${{{{search_space.{p}}}}}"));
            }
        }
    }
    trial.insert("command".into(), json!(command));
    trial.remove("type");
    if let Some(code) = trial.get("code").and_then(Value::as_str) {
        let code = absolute(code, &comp.base_dir);
        trial.insert("code".into(), json!(code));
    }
    if let Some(Value::Object(env)) = trial.get_mut("environment")
        && let Some(conda) = env.get("conda_file").and_then(Value::as_str)
    {
        let conda = absolute(conda, &comp.base_dir);
        env.insert("conda_file".into(), json!(conda));
    }
    trial
}

/// The names a sweep's `search_space` gives.
pub fn space_names(search_space: Option<&Value>) -> BTreeSet<String> {
    search_space
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// A sweep step's job file: its trial (a component) made a command job whose search-space
/// inputs become `${{search_space.<name>}}`.
pub(crate) fn sweep_job(
    name: &str,
    step: &StepSpec,
    comp: Option<&Resolved>,
    pipeline_base: &str,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let Some(comp) = comp else {
        let mut job = inline_job(step, pipeline_base);
        job.insert("type".into(), json!("sweep"));
        return job;
    };
    let mut job = step.fields.clone();
    job.insert("type".into(), json!("sweep"));
    let trial = component_trial(
        name,
        comp,
        step.fields.get("inputs"),
        step.fields.get("outputs"),
        &space_names(step.fields.get("search_space")),
        pipeline_base,
        errors,
    );
    job.insert(
        "outputs".into(),
        trial.get("outputs").cloned().unwrap_or_default(),
    );
    job.insert("trial".into(), Value::Object(trial));
    job.remove("inputs");
    job
}

/// A pipeline component step's job file: a child pipeline whose inputs are the step's.
pub(crate) fn pipeline_job(
    name: &str,
    step: &StepSpec,
    comp: &Resolved,
    pipeline_base: &str,
    settings: &Settings,
    errors: &mut Vec<String>,
) -> Map<String, Value> {
    let mut job = Map::new();
    job.insert("type".into(), json!("pipeline"));
    job.insert(
        "inputs".into(),
        Value::Object(bind_inputs(
            name,
            comp,
            step.fields.get("inputs"),
            pipeline_base,
            errors,
        )),
    );
    job.insert(
        "outputs".into(),
        Value::Object(bind_outputs(
            name,
            comp,
            step.fields.get("outputs"),
            pipeline_base,
            errors,
        )),
    );
    job.insert("jobs".into(), comp.spec.body["jobs"].clone());
    let mut inner = comp
        .spec
        .body
        .get("settings")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let compute = step
        .fields
        .get("compute")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| settings.default_compute.clone());
    if let Some(c) = compute
        && !inner.contains_key("default_compute")
    {
        inner.insert("default_compute".into(), json!(c));
    }
    if settings.force_rerun {
        inner.insert("force_rerun".into(), json!(true));
    }
    job.insert("settings".into(), Value::Object(inner));
    job
}
