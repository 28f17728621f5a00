//! Components (`commandComponent.schema.json`, `pipelineComponent.schema.json`): a named,
//! versioned step with typed inputs and outputs that pipelines and sweeps use. Parsed with
//! positions and checked whole: every `${{inputs.x}}` names a declared input, optional inputs
//! appear only inside `$[[...]]`, defaults fit their types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::interpolate::{Reference, references};
use crate::names::validate_name;
use crate::pipeline::optional;
use crate::yaml::{Source, SpecError};

/// The input types a component may declare.
pub const INPUT_TYPES: &[&str] = &[
    "string",
    "integer",
    "number",
    "boolean",
    "uri_file",
    "uri_folder",
    "custom_model",
    "mlflow_model",
];

/// Whether an input type is data (a path), not a literal value.
pub fn is_data_type(t: &str) -> bool {
    matches!(
        t,
        "uri_file" | "uri_folder" | "custom_model" | "mlflow_model"
    )
}

/// One declared input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentInput {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its value when the step binds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Whether it may be left unbound.
    #[serde(default)]
    pub optional: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One declared output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentOutput {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A checked component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    /// Name.
    pub name: String,
    /// Version, when the file gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `command` or `pipeline`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, ComponentInput>,
    /// Outputs by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, ComponentOutput>,
    /// Whether a run with the same inputs may be reused (default true).
    pub is_deterministic: bool,
    /// What a step made from it runs: for a command component, the command job fields
    /// (`command`, `code`, `environment`, `environment_variables`, `resources`, `limits`,
    /// `distribution`); for a pipeline component, `jobs` and `settings`.
    pub body: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    version: Option<Value>,
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Value>,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    outputs: BTreeMap<String, Spanned<Option<Value>>>,
    is_deterministic: Option<bool>,
    // Command components.
    command: Option<Spanned<String>>,
    code: Option<String>,
    environment: Option<Value>,
    environment_variables: Option<Value>,
    resources: Option<Value>,
    limits: Option<Value>,
    distribution: Option<Spanned<Value>>,
    // Pipeline components.
    jobs: Option<Value>,
    settings: Option<Value>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `value` is a value of type `kind` (for defaults and literals bound to inputs).
pub fn fits(kind: &str, value: &Value) -> bool {
    match kind {
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
        }
        "number" => value.is_number() || value.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
        "boolean" => {
            value.is_boolean() || value.as_str().is_some_and(|s| s == "true" || s == "false")
        }
        _ => text_of(value).is_some(),
    }
}

fn input_of(name: &str, v: &Value) -> Result<ComponentInput, String> {
    let m = v.as_object().ok_or_else(|| {
        format!("input `{name}` must be a mapping with a `type` (for example `type: uri_folder`)")
    })?;
    let mut input = ComponentInput {
        kind: String::new(),
        default: None,
        optional: false,
        description: None,
    };
    for (k, val) in m {
        match k.as_str() {
            "type" => input.kind = val.as_str().unwrap_or_default().to_string(),
            "default" => input.default = Some(val.clone()),
            "optional" => {
                input.optional = val
                    .as_bool()
                    .ok_or_else(|| format!("input `{name}`: `optional` is true or false"))?
            }
            "description" => input.description = val.as_str().map(str::to_string),
            "min" | "max" | "enum" | "mode" => {}
            other => {
                return Err(format!(
                    "input `{name}` has an unknown field `{other}`; use type, default, optional, description, min, max or enum"
                ));
            }
        }
    }
    if !INPUT_TYPES.contains(&input.kind.as_str()) {
        return Err(format!(
            "input `{name}` has type `{}`; use one of {}",
            input.kind,
            INPUT_TYPES.join(", ")
        ));
    }
    if let Some(d) = &input.default
        && !fits(&input.kind, d)
    {
        return Err(format!(
            "input `{name}`'s default {d} is not a{} {}",
            if input.kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "n"
            } else {
                ""
            },
            input.kind
        ));
    }
    if let (Some(Value::Array(allowed)), Some(d)) = (m.get("enum"), &input.default)
        && !allowed.contains(d)
    {
        return Err(format!(
            "input `{name}`'s default {d} is not one of its `enum` values"
        ));
    }
    Ok(input)
}

fn output_of(name: &str, v: Option<&Value>) -> Result<ComponentOutput, String> {
    let kind = match v {
        None | Some(Value::Null) => "uri_folder".to_string(),
        Some(Value::Object(m)) => m
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("uri_folder")
            .to_string(),
        Some(_) => return Err(format!("output `{name}` must be a mapping with a `type`")),
    };
    if !is_data_type(&kind) {
        return Err(format!(
            "output `{name}` has type `{kind}`; outputs are uri_folder, uri_file, custom_model or mlflow_model"
        ));
    }
    Ok(ComponentOutput { kind })
}

impl ComponentSpec {
    /// Parses and checks a component file.
    pub fn parse(src: &Source<'_>) -> Result<ComponentSpec, SpecError> {
        let raw: RawComponent = src.parse()?;
        let kind = raw
            .kind
            .as_ref()
            .map_or("command".to_string(), |k| k.value.clone());
        if kind != "command" && kind != "pipeline" {
            let msg = format!("`type: {kind}` is not a component type Berth runs");
            let e = match &raw.kind {
                Some(k) => src.error_at(k, msg),
                None => src.error_near("type", None, msg),
            };
            return Err(e.hint("use `type: command` or `type: pipeline`"));
        }
        let name = raw.name.ok_or_else(|| {
            SpecError::new(format!("{} has no `name`", src.name))
                .hint("a component needs a name, for example `name: train_model`")
        })?;
        validate_name("component", &name.value).map_err(|m| src.error_at(&name, m))?;
        let mut inputs = BTreeMap::new();
        for (n, v) in &raw.inputs {
            inputs.insert(
                n.clone(),
                input_of(n, &v.value).map_err(|m| src.error_at(v, m))?,
            );
        }
        let mut outputs = BTreeMap::new();
        for (n, v) in &raw.outputs {
            outputs.insert(
                n.clone(),
                output_of(n, v.value.as_ref()).map_err(|m| src.error_at(v, m))?,
            );
        }
        let mut body = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v.filter(|v| !v.is_null()) {
                body.insert(k.to_string(), v);
            }
        };
        if kind == "command" {
            let command = raw.command.as_ref().ok_or_else(|| {
                src.error_near("type", None, "a command component needs a `command`")
            })?;
            check_command(&command.value, &inputs, &outputs)
                .map_err(|m| src.error_at(command, m))?;
            if let Some(d) = &raw.distribution {
                return Err(src
                    .error_at(d, "`distribution` is not supported yet")
                    .hint("remove it; Berth runs single-node command jobs today"));
            }
            put("command", Some(Value::String(command.value.clone())));
            put("code", raw.code.map(Value::String));
            put("environment", raw.environment);
            put("environment_variables", raw.environment_variables);
            put("resources", raw.resources);
            put("limits", raw.limits);
        } else {
            let jobs = raw.jobs.filter(Value::is_object).ok_or_else(|| {
                src.error_near(
                    "type",
                    None,
                    "a pipeline component needs `jobs`, a mapping of steps",
                )
            })?;
            put("jobs", Some(jobs));
            put("settings", raw.settings);
        }
        Ok(ComponentSpec {
            name: name.value,
            version: raw.version.as_ref().and_then(text_of),
            display_name: raw.display_name,
            description: raw.description,
            tags: raw
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), text_of(v).unwrap_or_else(|| v.to_string())))
                .collect(),
            kind,
            inputs,
            outputs,
            is_deterministic: raw.is_deterministic.unwrap_or(true),
            body,
        })
    }

    /// The command, for a command component.
    pub fn command(&self) -> Option<&str> {
        self.body.get("command").and_then(Value::as_str)
    }
}

/// A registered component version: its spec (its code copied under the server's home and
/// named by absolute path) and the folder its other relative paths start from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The component.
    pub spec: ComponentSpec,
    /// Where its relative paths start.
    pub base_dir: String,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// Every reference in a component's command names a declared input or output, and an
/// optional input (with no default) is used only inside `$[[...]]`.
fn check_command(
    command: &str,
    inputs: &BTreeMap<String, ComponentInput>,
    outputs: &BTreeMap<String, ComponentOutput>,
) -> Result<(), String> {
    for r in references(command).map_err(|e| e.to_string())? {
        let known = match &r {
            Reference::Input(n) => inputs.contains_key(n),
            Reference::Output(n) => outputs.contains_key(n),
            Reference::Other(_) => false,
        };
        if !known {
            return Err(format!(
                "the command refers to `${{{{{}}}}}`, which the component does not declare (inputs: {}; outputs: {})",
                r.text(),
                inputs.keys().cloned().collect::<Vec<_>>().join(", "),
                outputs.keys().cloned().collect::<Vec<_>>().join(", "),
            ));
        }
    }
    let outside = optional::outside_segments(command).map_err(|e| e.to_string())?;
    for (name, input) in inputs {
        if input.optional && input.default.is_none() && outside.contains(name) {
            return Err(format!(
                "input `{name}` is optional, so the command must use it inside `$[[...]]` (for example `$[[--{name} ${{{{inputs.{name}}}}}]]`), which is left out when it is not given"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ComponentSpec, SpecError> {
        ComponentSpec::parse(&Source::new("train.yml", text))
    }

    const TRAIN: &str =
        "$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: my_train
display_name: Train
version: 1
inputs:
  training_data:
    type: uri_folder
  max_epocs:
    type: integer
  learning_rate:
    type: number
    default: 0.01
  schedule:
    type: string
    optional: true
outputs:
  model_output:
    type: uri_folder
code: ./train_src
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
command: >-
  python train.py --training_data ${{inputs.training_data}} --max_epocs ${{inputs.max_epocs}}
  --learning_rate ${{inputs.learning_rate}} $[[--schedule ${{inputs.schedule}}]]
  --model_output ${{outputs.model_output}}
";

    #[test]
    fn azure_mls_train_component_parses() {
        let c = parse(TRAIN).unwrap();
        assert_eq!(c.name, "my_train");
        assert_eq!(c.version.as_deref(), Some("1"));
        assert_eq!(
            c.inputs["learning_rate"].default,
            Some(serde_json::json!(0.01))
        );
        assert!(c.inputs["schedule"].optional);
        assert_eq!(c.outputs["model_output"].kind, "uri_folder");
        assert!(c.is_deterministic);
        assert_eq!(c.body["code"], "./train_src");
    }

    #[test]
    fn a_command_reference_to_an_undeclared_input_is_named() {
        let e = parse(&TRAIN.replace("${{inputs.max_epocs}}", "${{inputs.epochs}}")).unwrap_err();
        assert!(
            e.to_string()
                .contains("`${{inputs.epochs}}`, which the component does not declare"),
            "{e}"
        );
        assert!(e.to_string().starts_with("train.yml:"), "{e}");
    }

    #[test]
    fn an_optional_input_outside_optional_brackets_is_refused() {
        let e = parse(&TRAIN.replace(
            "$[[--schedule ${{inputs.schedule}}]]",
            "--schedule ${{inputs.schedule}}",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("input `schedule` is optional"),
            "{e}"
        );
    }

    #[test]
    fn a_default_of_the_wrong_type_and_an_unknown_type_are_refused() {
        let e = parse(&TRAIN.replace("default: 0.01", "default: fast")).unwrap_err();
        assert!(
            e.to_string().contains("default \"fast\" is not a number"),
            "{e}"
        );
        let e = parse(&TRAIN.replace("type: integer", "type: int")).unwrap_err();
        assert!(
            e.to_string()
                .contains("has type `int`; use one of string, integer"),
            "{e}"
        );
    }

    #[test]
    fn a_pipeline_component_keeps_its_jobs() {
        let c = parse("type: pipeline\nname: inner\ninputs:\n  x:\n    type: integer\n    default: 2\noutputs:\n  o:\n    type: uri_folder\njobs:\n  a:\n    command: echo ${{inputs.x}}\n    inputs:\n      x: ${{parent.inputs.x}}\n").unwrap();
        assert_eq!(c.kind, "pipeline");
        assert!(c.body["jobs"]["a"].is_object());
        let e = parse("type: pipeline\nname: inner\n").unwrap_err();
        assert!(e.to_string().contains("needs `jobs`"), "{e}");
    }
}
