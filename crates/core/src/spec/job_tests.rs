//! Tests of command job parsing: every field, and every error with its position.

use super::*;
use crate::spec::data::{DataPath, DataType, InputMode, OutputMode};

const SEED: &str = include_str!("../../../../examples/seed/training-job.yaml");

fn parse(text: &str) -> Result<JobSpec, String> {
    JobSpec::parse(&Source::new("job.yaml", text)).map_err(|e| e.to_string())
}

#[test]
fn parses_the_seed_job() {
    let job = parse(SEED).unwrap();
    assert_eq!(job.compute.as_deref(), Some("aks-compute"));
    assert_eq!(job.instance_type.as_deref(), Some("gpu-training"));
    assert!(
        matches!(&job.environment, Some(Environment::Inline { image: Some(i), .. }) if i.starts_with("mcr.microsoft.com/"))
    );
    assert!(job.command.contains("--epochs 50"));
    assert_eq!(
        job.inputs.get("training_data"),
        Some(&JobInput::Data {
            data_type: DataType::UriFolder,
            path: DataPath::Datastore {
                datastore: "mydata".into(),
                path: "training".into()
            },
            mode: InputMode::RoMount,
        })
    );
    assert_eq!(
        job.outputs.get("model").map(|o| o.mode),
        Some(OutputMode::RwMount)
    );
}

#[test]
fn parses_every_supported_field() {
    let job = parse(
        r#"$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
type: command
name: my-job
display_name: My job
experiment_name: exp1
description: trains
tags: {team: ml, n: 3}
code: src
command: python t.py --lr ${{inputs.lr}} --data ${{inputs.data}} --out ${{outputs.out}}
environment: azureml:my-env:2
environment_variables: {A: "1", B: true}
compute: local
resources: {instance_type: cpu-small, instance_count: 1}
limits: {timeout: 600}
queue_settings: {priority: high}
inputs:
  lr: 0.01
  data: {type: uri_file, path: https://example.com/d.csv, mode: download}
outputs:
  out:
    type: uri_folder
    path: azureml://datastores/ds/paths/results
    mode: upload
"#,
    )
    .unwrap();
    assert_eq!(job.name.as_deref(), Some("my-job"));
    assert_eq!(job.tags.get("n").map(String::as_str), Some("3"));
    assert_eq!(
        job.environment,
        Some(Environment::Reference("azureml:my-env:2".into()))
    );
    assert_eq!(
        job.environment_variables.get("B").map(String::as_str),
        Some("true")
    );
    assert_eq!(job.timeout_seconds, Some(600));
    assert_eq!(job.priority, Priority::High);
    assert_eq!(
        job.inputs.get("lr"),
        Some(&JobInput::Literal {
            value: "0.01".into()
        })
    );
    assert!(matches!(
        job.inputs.get("data"),
        Some(JobInput::Data {
            mode: InputMode::Download,
            ..
        })
    ));
    assert_eq!(
        job.outputs.get("out").map(|o| o.mode),
        Some(OutputMode::Upload)
    );
}

fn err(text: &str) -> String {
    parse(text).err().unwrap_or_default()
}

#[test]
fn errors_carry_line_and_column() {
    let e = err("command: x\ncomand: y\n");
    assert!(e.starts_with("job.yaml:2:1: unknown field `comand`"), "{e}");
    let e = err("command: x\nlimits:\n  timeout: soon\n");
    assert!(e.starts_with("job.yaml:3:12:"), "{e}");
    let e = err("command: x\n  bad: [\n");
    assert!(e.starts_with("job.yaml:"), "{e}");
    let e = err("command: python t.py ${{inputs.nope}}\ninputs:\n  data: 1\n");
    assert!(
        e.starts_with("job.yaml:1:10: the command refers to `${{inputs.nope}}`"),
        "{e}"
    );
    assert!(e.contains("it defines `data`"), "{e}");
    let e = err("command: x ${{outputs.m}}\n");
    assert!(
        e.contains("`${{outputs.m}}`") && e.contains("it defines none"),
        "{e}"
    );
}

#[test]
fn unsupported_azure_fields_are_rejected_by_name() {
    for (yaml, field) in [
        (
            "command: x\ndistribution:\n  type: pytorch\n",
            "distribution",
        ),
        ("command: x\nservices: {}\n", "services"),
        ("command: x\nidentity:\n  type: managed\n", "identity"),
        (
            "command: x\nresources:\n  shm_size: 2g\n",
            "resources.shm_size",
        ),
        (
            "command: x\nqueue_settings:\n  job_tier: spot\n",
            "queue_settings.job_tier",
        ),
    ] {
        let e = err(yaml);
        assert!(
            e.contains(&format!("`{field}` is not supported yet")),
            "{e}"
        );
        assert!(e.starts_with("job.yaml:"), "{e}");
    }
    let e = err("type: sweep\ncommand: x\n");
    assert!(
        e.starts_with("job.yaml:1:7: `type: sweep` jobs are not supported yet"),
        "{e}"
    );
    let e = err("command: x\nresources:\n  instance_count: 2\n");
    assert!(e.contains("instance_count` other than 1"), "{e}");
}

#[test]
fn bad_values_are_explained() {
    assert!(err("name: x\n").contains("the job has no `command`"));
    assert!(err("command: \"  \"\n").contains("`command` is empty"));
    assert!(err("command: x\nlimits: {timeout: 0}\n").contains("positive number of seconds"));
    assert!(err("command: x\nname: a b\n").contains("not a valid job name"));
    assert!(
        err("command: x\ninputs:\n  d: {type: uri_folder}\n").contains("input `d` has no `path`")
    );
    assert!(
        err("command: x\ninputs:\n  d: {type: mltable, path: p}\n")
            .contains("`type: mltable` is not supported yet")
    );
    assert!(err("command: x\nenvironment: ubuntu\n").contains("`environment` must be"));
    assert!(
        err("command: x\nqueue_settings: {priority: urgent}\n")
            .contains("`urgent` is not a priority")
    );
}

#[test]
fn set_overrides_fields() {
    let with = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        crate::overrides::parse_with_sets(&Source::new("job.yml", SEED), &sets, JobSpec::parse)
            .map_err(|e| e.to_string())
    };
    let job = with(&[
        "resources.instance_type=cpu-small",
        "limits.timeout=60",
        "environment_variables.SEED=1",
        "inputs.training_data.path=./local",
    ])
    .unwrap();
    assert_eq!(job.instance_type.as_deref(), Some("cpu-small"));
    assert_eq!(job.timeout_seconds, Some(60));
    assert_eq!(job.environment_variables["SEED"], "1");
    assert!(matches!(
        job.inputs.get("training_data"),
        Some(JobInput::Data {
            path: DataPath::Local { .. },
            ..
        })
    ));
    assert!(with(&["limits.timeout=-1"]).is_err());
    assert!(
        with(&["colour=red"])
            .unwrap_err()
            .contains("unknown field `colour`")
    );
    assert!(with(&["nonsense"]).unwrap_err().contains("has no `=`"));
}

#[test]
fn a_pipeline_file_is_refused_as_a_pipeline_not_as_a_typo() {
    let err = parse("$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\ntype: pipeline\nsettings:\n  default_compute: azureml:cpu-cluster\njobs:\n  train:\n    type: command\n    command: echo\n").unwrap_err();
    assert!(
        err.starts_with("job.yaml:2:7: `type: pipeline` jobs are not supported yet"),
        "{err}"
    );
}

#[test]
fn a_sweep_field_without_a_type_names_the_sweep() {
    let err = parse("command: python t.py\ntrial:\n  command: python t.py\n").unwrap_err();
    assert!(
        err.contains("`trial` is a sweep job field; sweep jobs are not supported yet"),
        "{err}"
    );
    assert!(err.starts_with("job.yaml:"), "{err}");
}

#[test]
fn an_unknown_field_is_still_a_typo() {
    let err = parse("command: echo\ncomand: echo\n").unwrap_err();
    assert!(err.contains("unknown field `comand`"), "{err}");
}

#[test]
fn a_files_type_is_read_however_it_is_written() {
    use crate::spec::job::job_type;
    assert_eq!(
        job_type("type: sweep # tuned\ntrial: {}\n").as_deref(),
        Some("sweep")
    );
    assert_eq!(
        job_type(r#"{"type":"pipeline","jobs":{}}"#).as_deref(),
        Some("pipeline")
    );
    assert_eq!(job_type("command: echo type: pipeline\n"), None);
}
