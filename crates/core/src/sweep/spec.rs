//! A sweep job file (`type: sweep`) as Azure ML writes it, checked whole: the trial, the
//! search space, the sampling algorithm, the objective, the limits and the early termination
//! policy; and a trial's command with `${{search_space.<name>}}` filled in.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::sample::{Goal, Params};
use super::space::{self, Distribution, SearchSpace};
use super::terminate::{self, Policy};
use crate::yaml::{Source, SpecError};

/// How trials' parameters are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// At random; reproducible with a seed.
    Random {
        /// The seed, when given.
        seed: Option<u64>,
    },
    /// Every combination.
    Grid,
    /// Model-based (TPE), seeded when given.
    Bayesian {
        /// The seed, when given.
        seed: Option<u64>,
    },
}

/// How many trials, how many at once, for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Trials in all.
    pub max_total_trials: u32,
    /// Trials at once.
    pub max_concurrent_trials: u32,
    /// The whole sweep, seconds.
    pub timeout: Option<u64>,
    /// Each trial, seconds.
    pub trial_timeout: Option<u64>,
}

/// A checked sweep file.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    /// Name.
    pub name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Experiment.
    pub experiment_name: Option<String>,
    /// Compute, for the trials.
    pub compute: Option<String>,
    /// The trial: a command job's fields.
    pub trial: Value,
    /// `resources` and `queue_settings` for every trial that does not give its own.
    pub trial_defaults: Value,
    /// The sweep's inputs, which the trial's bindings read.
    pub inputs: Value,
    /// The parameters.
    pub space: SearchSpace,
    /// How parameters are chosen.
    pub sampler: Sampler,
    /// The metric the trials log, and which way is better.
    pub primary_metric: String,
    /// Which way is better.
    pub goal: Goal,
    /// Limits.
    pub limits: Limits,
    /// When to stop a trial early.
    pub early_termination: Option<Policy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    goal: String,
    primary_metric: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_total_trials: Option<u32>,
    max_concurrent_trials: Option<u32>,
    timeout: Option<u64>,
    trial_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    #[serde(rename = "type")]
    job_type: String,
    name: Option<String>,
    display_name: Option<String>,
    experiment_name: Option<String>,
    #[serde(rename = "description", default)]
    _description: Option<String>,
    #[serde(rename = "tags", default)]
    _tags: BTreeMap<String, String>,
    compute: Option<String>,
    resources: Option<Value>,
    queue_settings: Option<Value>,
    trial: Value,
    #[serde(default)]
    inputs: Value,
    #[serde(rename = "outputs", default)]
    _outputs: Value,
    search_space: Value,
    sampling_algorithm: Value,
    objective: RawObjective,
    #[serde(default)]
    limits: RawLimits,
    early_termination: Option<Value>,
}

/// The `${{search_space.<name>}}` placeholders of a command.
fn placeholders(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(i) = rest.find("${{") {
        let after = &rest[i + 3..];
        let Some(end) = after.find("}}") else { break };
        if let Some(name) = after[..end].trim().strip_prefix("search_space.") {
            out.push(name.trim().to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// A trial's command with its parameters filled in; other placeholders are left for the job.
pub fn trial_command(command: &str, params: &Params) -> String {
    let mut out = command.to_string();
    for (name, value) in params {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for form in [
            format!("${{{{search_space.{name}}}}}"),
            format!("${{{{ search_space.{name} }}}}"),
        ] {
            out = out.replace(&form, &text);
        }
    }
    out
}

fn sampler_of(src: &Source<'_>, v: &Value, space: &SearchSpace) -> Result<Sampler, SpecError> {
    let (kind, seed) = match v {
        Value::String(s) => (s.to_lowercase(), None),
        Value::Object(m) => (
            m.get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase(),
            m.get("seed").and_then(Value::as_u64),
        ),
        _ => (String::new(), None),
    };
    let at = |m: String| src.error_near("sampling_algorithm", None, m);
    match kind.as_str() {
        "random" => Ok(Sampler::Random { seed }),
        "grid" => {
            super::sample::grid(space).map_err(|e| at(e.to_string()))?;
            Ok(Sampler::Grid)
        }
        "bayesian" => {
            let unsupported = space.iter().find(|(_, d)| {
                !matches!(d, Distribution::Choice(_) | Distribution::Uniform { .. })
            });
            if let Some((name, _)) = unsupported {
                return Err(at(format!(
                    "bayesian sampling takes choice, uniform and quniform parameters, as in Azure ML; `{name}` is another kind (use random sampling for it)"
                )));
            }
            Ok(Sampler::Bayesian { seed })
        }
        other => Err(at(format!(
            "sampling algorithm `{other}` is not random, grid or bayesian"
        ))),
    }
}

fn limits_of(
    src: &Source<'_>,
    raw: RawLimits,
    sampler: &Sampler,
    space: &SearchSpace,
) -> Result<Limits, SpecError> {
    let grid_size = match sampler {
        Sampler::Grid => super::sample::grid(space).map(|g| g.len() as u32).ok(),
        _ => None,
    };
    let total = raw.max_total_trials.or(grid_size).ok_or_else(|| {
        src.error_near(
            "limits",
            None,
            "limits.max_total_trials is required for random and bayesian sampling",
        )
    })?;
    if total == 0 || raw.max_concurrent_trials == Some(0) {
        return Err(src.error_near(
            "limits",
            None,
            "max_total_trials and max_concurrent_trials must be at least 1",
        ));
    }
    if raw.timeout == Some(0) || raw.trial_timeout == Some(0) {
        return Err(src.error_near(
            "limits",
            None,
            "timeout and trial_timeout are seconds above 0",
        ));
    }
    Ok(Limits {
        max_total_trials: total,
        max_concurrent_trials: raw.max_concurrent_trials.unwrap_or(total).min(total),
        timeout: raw.timeout,
        trial_timeout: raw.trial_timeout,
    })
}

impl SweepSpec {
    /// Parses and checks a sweep file; every problem is reported with where it is.
    pub fn parse(src: &Source<'_>) -> Result<SweepSpec, SpecError> {
        let raw: RawSweep = src.parse()?;
        if raw.job_type != "sweep" {
            return Err(src.error_near(
                "type",
                Some(&raw.job_type),
                format!("type is `{}`, not `sweep`", raw.job_type),
            ));
        }
        let command = raw.trial.get("command").and_then(Value::as_str).ok_or_else(|| {
            src.error_near("trial", None, "the trial needs a `command` (a trial that is a component is not supported yet)")
        })?;
        let space = space::parse(&raw.search_space)
            .map_err(|e| src.error_near("search_space", None, e.to_string()))?;
        for name in placeholders(command) {
            if !space.contains_key(&name) {
                return Err(src.error_near("command", None, format!(
                    "the trial's command uses ${{{{search_space.{name}}}}}, which the search space does not name (it names: {})",
                    space.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let sampler = sampler_of(src, &raw.sampling_algorithm, &space)?;
        let goal = match raw.objective.goal.to_lowercase().as_str() {
            "maximize" => Goal::Maximize,
            "minimize" => Goal::Minimize,
            other => {
                return Err(src.error_near(
                    "goal",
                    Some(other),
                    format!("objective.goal `{other}` is not maximize or minimize"),
                ));
            }
        };
        if raw.objective.primary_metric.trim().is_empty() {
            return Err(src.error_near(
                "primary_metric",
                None,
                "objective.primary_metric names the metric the trials log",
            ));
        }
        let early_termination = match &raw.early_termination {
            None | Some(Value::Null) => None,
            Some(v) if matches!(sampler, Sampler::Bayesian { .. }) && v.get("type").is_some() => {
                return Err(src.error_near(
                    "early_termination",
                    None,
                    "bayesian sampling takes no early termination policy, as in Azure ML",
                ));
            }
            Some(v) => Some(
                terminate::parse(v)
                    .map_err(|e| src.error_near("early_termination", None, e.to_string()))?,
            ),
        };
        let limits = limits_of(src, raw.limits, &sampler, &space)?;
        Ok(SweepSpec {
            name: raw.name,
            display_name: raw.display_name,
            experiment_name: raw.experiment_name,
            compute: raw.compute,
            trial_defaults: serde_json::json!({
                "resources": raw.resources,
                "queue_settings": raw.queue_settings,
            }),
            trial: raw.trial,
            inputs: raw.inputs,
            space,
            sampler,
            primary_metric: raw.objective.primary_metric,
            goal,
            limits,
            early_termination,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
description: tune the learning rate
tags:
  team: ml
trial:
  code: src
  command: >-
    python train.py --lr ${{search_space.learning_rate}} --boosting ${{search_space.boosting}}
  environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
compute: azureml:cpu-cluster
sampling_algorithm: random
search_space:
  learning_rate:
    type: uniform
    min_value: 0.01
    max_value: 0.9
  boosting:
    type: choice
    values: ["gbdt", "dart"]
objective:
  goal: minimize
  primary_metric: test-multi_logloss
limits:
  max_total_trials: 12
  max_concurrent_trials: 3
  timeout: 7200
early_termination:
  type: bandit
  evaluation_interval: 2
  slack_factor: 0.1
  delay_evaluation: 6
"#;

    fn parse(text: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::parse(&Source::new("sweep.yml", text))
    }

    #[test]
    fn an_azure_sweep_file_parses() {
        let s = parse(SWEEP).expect("parses");
        assert_eq!(s.sampler, Sampler::Random { seed: None });
        assert_eq!(
            (s.goal, s.primary_metric.as_str()),
            (Goal::Minimize, "test-multi_logloss")
        );
        assert_eq!(
            (s.limits.max_total_trials, s.limits.max_concurrent_trials),
            (12, 3)
        );
        assert!(matches!(s.early_termination, Some(Policy::Bandit { .. })));
        let params: Params = [
            ("learning_rate".to_string(), serde_json::json!(0.1)),
            ("boosting".to_string(), serde_json::json!("dart")),
        ]
        .into();
        let cmd = trial_command(s.trial["command"].as_str().unwrap(), &params);
        assert_eq!(cmd, "python train.py --lr 0.1 --boosting dart");
    }

    #[test]
    fn the_sweeps_resources_and_queue_settings_are_the_trials_defaults() {
        let text = SWEEP.replace(
            "compute: azureml:cpu-cluster\n",
            "compute: azureml:cpu-cluster\nresources:\n  instance_type: gpu-small\nqueue_settings:\n  priority: high\n",
        );
        let s = parse(&text).expect("parses");
        assert_eq!(s.trial_defaults["resources"]["instance_type"], "gpu-small");
        assert_eq!(s.trial_defaults["queue_settings"]["priority"], "high");
        assert!(parse(SWEEP).unwrap().trial_defaults["resources"].is_null());
    }

    #[test]
    fn grid_takes_its_trial_count_from_the_space() {
        let text = SWEEP
            .replace("sampling_algorithm: random", "sampling_algorithm: grid")
            .replace(
                "type: uniform\n    min_value: 0.01\n    max_value: 0.9",
                "type: choice\n    values: [0.01, 0.1, 0.5]",
            )
            .replace("  max_total_trials: 12\n", "");
        let s = parse(&text).expect("parses");
        assert_eq!(
            (s.limits.max_total_trials, s.limits.max_concurrent_trials),
            (6, 3)
        );
    }

    #[test]
    fn bad_sweeps_say_what_is_wrong_and_where() {
        let cases = [
            (
                SWEEP.replace("sampling_algorithm: random", "sampling_algorithm: grid"),
                "`learning_rate` is continuous",
            ),
            (
                SWEEP.replace("min_value: 0.01", "min_value: 2"),
                "above max_value",
            ),
            (
                SWEEP.replace("${{search_space.boosting}}", "${{search_space.booster}}"),
                "does not name (it names: boosting, learning_rate)",
            ),
            (
                SWEEP.replace("goal: minimize", "goal: lowest"),
                "not maximize or minimize",
            ),
            (
                SWEEP.replace("sampling_algorithm: random", "sampling_algorithm: bayesian"),
                "no early termination policy",
            ),
            (
                SWEEP.replace("  max_total_trials: 12\n", ""),
                "max_total_trials is required",
            ),
            (
                SWEEP.replace("slack_factor: 0.1", "slack_factor: -1"),
                "slack_factor must be",
            ),
        ];
        for (text, says) in cases {
            let e = parse(&text).expect_err(says);
            let shown = format!("{e}");
            assert!(shown.contains(says), "{says}: {shown}");
        }
        let e = parse(&SWEEP.replace("goal: minimize", "goal: lowest")).unwrap_err();
        assert!(e.position.is_some(), "a file:line for {e}");
    }
}
