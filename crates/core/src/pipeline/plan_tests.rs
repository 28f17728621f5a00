//! Plans built from Azure ML shaped pipeline and component files.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::graph::GraphError;
use super::plan::{Plan, Resolved};
use super::spec::{PipelineSpec, StepKind};
use crate::spec::component::ComponentSpec;
use crate::yaml::Source;

const TRAIN: &str = "type: command
name: my_train
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
command: python train.py --data ${{inputs.training_data}} --epochs ${{inputs.max_epocs}} --lr ${{inputs.learning_rate}} $[[--schedule ${{inputs.schedule}}]] --out ${{outputs.model_output}}
";

const SCORE: &str = "type: command
name: my_score
inputs:
  model_input:
    type: uri_folder
  test_data:
    type: uri_file
outputs:
  score_output:
    type: uri_folder
command: python score.py ${{inputs.model_input}} ${{inputs.test_data}} ${{outputs.score_output}}
";

fn component(text: &str, label: &str) -> Resolved {
    Resolved {
        spec: ComponentSpec::parse(&Source::new(label, text)).unwrap(),
        base_dir: "/components".into(),
        label: label.into(),
    }
}

fn plan(pipeline: &str, comps: &[(&str, &str)]) -> Result<Plan, GraphError> {
    let spec = PipelineSpec::parse(&Source::new("pipeline.yml", pipeline)).unwrap();
    let resolved: BTreeMap<String, Resolved> = comps
        .iter()
        .map(|(step, text)| (step.to_string(), component(text, &format!("{step}.yml"))))
        .collect();
    Plan::build(&spec, "/work/project", &resolved)
}

const E2E: &str = "type: pipeline
inputs:
  epochs: 20
  data:
    type: uri_folder
    path: ./data
outputs:
  trained_model:
    type: uri_folder
    path: azureml://datastores/workspaceblobstore/paths/models/
settings:
  default_compute: azureml:cpu-cluster
jobs:
  train_job:
    type: command
    component: ./train.yml
    inputs:
      training_data: ${{parent.inputs.data}}
      max_epocs: ${{parent.inputs.epochs}}
    outputs:
      model_output: ${{parent.outputs.trained_model}}
  score_job:
    component: ./score.yml
    inputs:
      model_input: ${{parent.jobs.train_job.outputs.model_output}}
      test_data:
        path: ./data/test.csv
";

#[test]
fn a_component_step_gets_its_defaults_its_optional_segments_and_the_pipeline_compute() {
    let p = plan(E2E, &[("train_job", TRAIN), ("score_job", SCORE)]).unwrap();
    let train = &p.steps["train_job"];
    assert_eq!(train.kind, StepKind::Command);
    assert_eq!(train.base_dir, "/components");
    assert_eq!(train.job["inputs"]["learning_rate"], json!(0.01));
    assert!(train.job["inputs"].get("schedule").is_none());
    let command = train.job["command"].as_str().unwrap();
    assert!(!command.contains("schedule"), "{command}");
    let job = p.materialize("train_job", &BTreeMap::new()).unwrap();
    assert_eq!(
        job["inputs"]["training_data"],
        json!({"type": "uri_folder", "path": "/work/project/data"})
    );
    assert_eq!(job["inputs"]["max_epocs"], json!(20));
    assert_eq!(
        job["outputs"]["model_output"]["path"],
        "azureml://datastores/workspaceblobstore/paths/models/"
    );
    assert_eq!(p.settings.default_compute.as_deref(), Some("cpu-cluster"));
}

#[test]
fn a_step_reads_the_path_its_producer_made() {
    let p = plan(E2E, &[("train_job", TRAIN), ("score_job", SCORE)]).unwrap();
    let made: BTreeMap<(String, String), (String, String)> = [(
        ("train_job".to_string(), "model_output".to_string()),
        (
            "uri_folder".to_string(),
            "/jobs/p_train_job/outputs/model_output".to_string(),
        ),
    )]
    .into();
    let job = p.materialize("score_job", &made).unwrap();
    assert_eq!(
        job["inputs"]["model_input"],
        json!({"type": "uri_folder", "path": "/jobs/p_train_job/outputs/model_output"})
    );
    assert_eq!(
        job["inputs"]["test_data"],
        json!({"type": "uri_file", "path": "/work/project/data/test.csv"})
    );
    let e = p.materialize("score_job", &BTreeMap::new()).unwrap_err();
    assert!(
        e.contains("step `train_job` has not made output `model_output`"),
        "{e}"
    );
}

#[test]
fn every_binding_problem_of_a_pipeline_is_named_at_once() {
    let bad = "type: pipeline
jobs:
  train_job:
    component: ./train.yml
    inputs:
      training_data: ${{parent.inputs.missing}}
      epochs: 3
  score_job:
    component: ./score.yml
    inputs:
      model_input: ${{parent.jobs.train_job.outputs.model_output}}
      test_data: ${{parent.jobs.train_job.outputs.model_output}}
";
    let e = plan(bad, &[("train_job", TRAIN), ("score_job", SCORE)])
        .unwrap_err()
        .to_string();
    for says in [
        "step `train_job`: component train_job.yml has no input `epochs`",
        "step `train_job`: input `max_epocs` of component train_job.yml is required and not bound",
        "the pipeline has no input `missing`",
        "input `test_data` is a uri_file but step `train_job`'s output `model_output` is a uri_folder",
    ] {
        assert!(e.contains(says), "missing {says:?} in:\n{e}");
    }
}

#[test]
fn a_literal_of_the_wrong_type_is_named() {
    let bad = E2E.replace("epochs: 20", "epochs: twenty");
    let p = plan(&bad, &[("train_job", TRAIN), ("score_job", SCORE)]).unwrap();
    // A pipeline input's literal reaches the step at run time; a literal on the step is checked now.
    assert!(p.steps.contains_key("train_job"));
    let bad = E2E.replace("max_epocs: ${{parent.inputs.epochs}}", "max_epocs: many");
    let e = plan(&bad, &[("train_job", TRAIN), ("score_job", SCORE)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("step `train_job`, input `max_epocs`: \"many\" is not an integer"),
        "{e}"
    );
}

#[test]
fn a_sweep_step_turns_its_trial_component_into_a_trial_command() {
    let sweep = "type: pipeline
inputs:
  data:
    type: uri_folder
    path: ./data
jobs:
  sweep_step:
    type: sweep
    trial: ./train.yml
    inputs:
      training_data: ${{parent.inputs.data}}
    search_space:
      max_epocs:
        type: choice
        values: [1, 2]
    sampling_algorithm: grid
    objective:
      goal: minimize
      primary_metric: loss
    limits:
      max_total_trials: 2
";
    let p = plan(sweep, &[("sweep_step", TRAIN)]).unwrap();
    let job = p.materialize("sweep_step", &BTreeMap::new()).unwrap();
    assert_eq!(job["type"], "sweep");
    let command = job["trial"]["command"].as_str().unwrap();
    assert!(
        command.contains("--epochs ${{search_space.max_epocs}}"),
        "{command}"
    );
    assert!(job["trial"]["inputs"].get("max_epocs").is_none());
    assert_eq!(
        job["trial"]["inputs"]["training_data"]["path"],
        "/work/project/data"
    );
    assert_eq!(job["outputs"]["model_output"]["type"], "uri_folder");
}

#[test]
fn a_pipeline_component_step_becomes_a_child_pipeline_with_the_outer_compute() {
    let inner = "type: pipeline
name: inner
inputs:
  n:
    type: integer
    default: 2
outputs:
  out:
    type: uri_folder
jobs:
  a:
    command: echo ${{inputs.n}} > ${{outputs.o}}/n
    inputs:
      n: ${{parent.inputs.n}}
    outputs:
      o: ${{parent.outputs.out}}
";
    let outer = "type: pipeline
settings:
  default_compute: azureml:serverless
jobs:
  nested:
    type: pipeline
    component: ./inner.yml
  after:
    command: ls ${{inputs.x}}
    inputs:
      x: ${{parent.jobs.nested.outputs.out}}
";
    let p = plan(outer, &[("nested", inner)]).unwrap();
    let nested = &p.steps["nested"];
    assert_eq!(nested.kind, StepKind::Pipeline);
    assert_eq!(nested.job["inputs"]["n"], json!(2));
    assert_eq!(nested.job["settings"]["default_compute"], "serverless");
    assert_eq!(nested.job["outputs"]["out"], json!({"type": "uri_folder"}));
    let g = p.graph().unwrap();
    assert_eq!(g.needs("after").into_iter().collect::<Vec<_>>(), ["nested"]);
    let _: &Value = &nested.job["jobs"]["a"];
}
