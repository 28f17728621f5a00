use std::collections::BTreeMap;

use berth_core::job::{JobRecord, ResolvedInput, ResolvedOutput};
use berth_core::spec::data::{DataType, InputMode};
use berth_core::spec::instance_type::InstanceType;

use super::*;

fn record(dir: &Path, yaml: &str) -> JobRecord {
    let mut it = InstanceType::default_type();
    it.name = "gpu".into();
    it.limits.gpus = 1;
    it.node_selector
        .insert("agentpool".into(), "gpupool".into());
    let workdir = dir.join("job").display().to_string();
    let mut job = crate::testing::job_record("Train_Model.1", yaml, &workdir);
    job.display_name = "x".into();
    job.compute = "aks".into();
    job.instance_type = it;
    job.base_dir = dir.display().to_string();
    job
}

#[test]
fn a_pod_logs_to_its_run_through_the_clusters_server_url() {
    let t = tempfile::tempdir().unwrap();
    let mut job = record(t.path(), "command: python train.py\n");
    std::fs::create_dir_all(JobDir::new(&job.workdir).code()).unwrap();
    job.tracking = Some(berth_core::job::JobTracking {
        local_uri: "http://127.0.0.1:8700".into(),
        token: "Train_Model.1.abc".into(),
        experiment_id: "3".into(),
    });
    let env_of = |url: Option<&str>| {
        let built = build(&job, "work", url, "reg.example/berth:1").unwrap();
        let j = serde_json::to_value(&built.job).unwrap();
        let env = j["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        env.as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let env = env_of(Some("http://berth-server.azureml.svc:8700/"));
    assert_eq!(
        env["MLFLOW_TRACKING_URI"],
        "http://berth-server.azureml.svc:8700"
    );
    assert_eq!(env["MLFLOW_TRACKING_TOKEN"], "Train_Model.1.abc");
    assert_eq!(env["MLFLOW_EXPERIMENT_ID"], "3");
    assert_eq!(env["MLFLOW_RUN_ID"], "Train_Model.1");
    // Without a server URL the pod cannot reach the server: no tracking variables at all.
    assert!(!env_of(None).contains_key("MLFLOW_TRACKING_URI"));
}

#[test]
fn names_are_dns_labels_and_stable() {
    assert_eq!(object_name("train-1"), "train-1");
    let changed = object_name("Train_Model.1");
    assert!(changed.starts_with("train-model-1-"), "{changed}");
    assert_eq!(changed, object_name("Train_Model.1"));
    assert_ne!(changed, object_name("train_model.1"));
    let long = object_name(&"a".repeat(100));
    assert!(long.len() <= 52, "{long}");
}

#[test]
fn curated_environments_map_to_their_images() {
    use berth_core::spec::job::Environment;
    let r =
        Environment::Reference("azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest".into());
    assert_eq!(
        image_for(Some(&r)),
        "mcr.microsoft.com/azureml/curated/sklearn-1.0-ubuntu20.04-py38-cpu:latest"
    );
    assert_eq!(image_for(None), DEFAULT_IMAGE);
}

#[test]
fn a_job_becomes_a_configmap_and_a_job_with_its_instance_type() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(data.join("sub/b.csv"), "x\n").unwrap();
    let mut job = record(
        t.path(),
        "command: python train.py --data ${{inputs.d}} --lr ${{inputs.lr}} --out ${{outputs.m}}\ninputs:\n  d:\n    type: uri_folder\n    path: data\n  lr: 0.1\noutputs:\n  m:\n    type: uri_folder\nlimits:\n  timeout: 60\n",
    );
    std::fs::create_dir_all(JobDir::new(&job.workdir).code()).unwrap();
    std::fs::write(
        JobDir::new(&job.workdir).code().join("train.py"),
        "print(1)",
    )
    .unwrap();
    job.inputs.insert(
        "d".into(),
        ResolvedInput::Path {
            path: data.display().to_string(),
            data_type: DataType::UriFolder,
            mode: InputMode::RoMount,
        },
    );
    job.inputs.insert(
        "lr".into(),
        ResolvedInput::Literal {
            value: "0.1".into(),
        },
    );
    job.outputs.insert(
        "m".into(),
        ResolvedOutput {
            path: "/x/m".into(),
            data_type: DataType::UriFolder,
        },
    );
    let built = build(&job, "work", None, &berth_image()).unwrap();
    let j = serde_json::to_value(&built.job).unwrap();
    assert_eq!(j["metadata"]["namespace"], "work");
    assert_eq!(
        j["metadata"]["annotations"][JOB_NAME_ANNOTATION],
        "Train_Model.1"
    );
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 60);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["agentpool"], "gpupool");
    let c = &pod["containers"][0];
    assert_eq!(
        last(&c["command"]),
        "python train.py --data /berth/inputs/d --lr 0.1 --out /berth/outputs/m"
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert!(c["resources"]["requests"].get("nvidia.com/gpu").is_none());
    let cm = serde_json::to_value(&built.config_map).unwrap();
    assert_eq!(cm["binaryData"].as_object().unwrap().len(), 3);
    let volumes = pod["volumes"].as_array().unwrap();
    let paths: Vec<&str> = volumes
        .iter()
        .flat_map(|v| v["configMap"]["items"].as_array().into_iter().flatten())
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["train.py", "a.csv", "sub/b.csv"]);
}

#[test]
fn too_much_data_for_a_configmap_is_refused_with_advice() {
    let t = tempfile::tempdir().unwrap();
    let mut job = record(
        t.path(),
        "command: ls ${{inputs.big}}\ninputs:\n  big:\n    type: uri_file\n    path: big.bin\n",
    );
    std::fs::create_dir_all(JobDir::new(&job.workdir).code()).unwrap();
    let big = t.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 1024 * 1024]).unwrap();
    job.inputs.insert(
        "big".into(),
        ResolvedInput::Path {
            path: big.display().to_string(),
            data_type: DataType::UriFile,
            mode: InputMode::RoMount,
        },
    );
    let e = build(&job, "work", None, &berth_image())
        .unwrap_err()
        .to_string();
    assert!(e.contains("mode: direct"), "{e}");
    assert!(e.contains("--server-url"), "{e}");
    // With a server URL, the pod fetches them from the Berth server with the job's token.
    job.upload_token = Some("tok".into());
    let built = build(&job, "work", Some("http://berth:8700/"), "reg/berth:1").unwrap();
    let j = serde_json::to_value(&built.job).unwrap();
    let pod = &j["spec"]["template"]["spec"];
    let fetch = &pod["initContainers"][0];
    assert_eq!(fetch["name"], "berth-fetch");
    assert_eq!(
        fetch["command"][3],
        "http://berth:8700/api/jobs/Train_Model.1/files"
    );
    assert_eq!(fetch["command"][7], "inputs/big=/berth/inputs/big");
    assert_eq!(
        last(&pod["containers"][0]["command"]),
        "ls /berth/inputs/big/big.bin"
    );
    assert!(built.config_map.binary_data.is_none_or(|d| d.is_empty()));
}

#[test]
fn base64_matches_the_standard() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[test]
fn with_a_server_url_the_command_runs_under_job_run_which_uploads_outputs() {
    let t = tempfile::tempdir().unwrap();
    let mut job = record(
        t.path(),
        "command: python train.py --out ${{outputs.m}}\noutputs:\n  m:\n    type: uri_folder\n",
    );
    std::fs::create_dir_all(JobDir::new(&job.workdir).code()).unwrap();
    job.outputs.insert(
        "m".into(),
        ResolvedOutput {
            path: "/x/m".into(),
            data_type: DataType::UriFolder,
        },
    );
    job.upload_token = Some("tok".into());
    let built = build(
        &job,
        "work",
        Some("http://berth-server.azureml.svc:8700/"),
        "reg.example/berth:1",
    )
    .unwrap();
    let j = serde_json::to_value(&built.job).unwrap();
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["image"], "reg.example/berth:1");
    // Init containers get the job's CPU and memory (quotas demand them), not its GPU.
    let init = &pod["initContainers"][0]["resources"];
    assert_eq!(init["requests"]["cpu"], "100m");
    assert!(init["limits"].get("nvidia.com/gpu").is_none(), "{init}");
    assert!(init["limits"].get("memory").is_some(), "{init}");
    let cmd: Vec<&str> = pod["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd,
        [
            "/berth/bin/berth",
            "job-run",
            "--code-from",
            "/berth/code-files",
            "--upload-url",
            "http://berth-server.azureml.svc:8700/api/jobs/Train_Model.1/uploads",
            "--output-dir",
            "m=/berth/outputs/m",
            "--",
            "sh",
            "-c",
            "python train.py --out /berth/outputs/m"
        ]
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "BERTH_UPLOAD_TOKEN" && e["value"] == "tok")
    );
    // The working folder is writable (outputs/ and logs/ are made in it).
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == CODE_DIR && m.get("readOnly").is_none())
    );
    // Without a server URL nothing is uploaded.
    let plain = serde_json::to_value(build(&job, "work", None, "b").unwrap().job).unwrap();
    let plain = plain["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(!plain.contains("--upload-url"), "{plain}");
}

#[test]
fn a_conda_environment_is_built_in_the_pod_with_uv_from_berths_image() {
    let t = tempfile::tempdir().unwrap();
    let mut job = record(
        t.path(),
        "command: python train.py
",
    );
    std::fs::create_dir_all(JobDir::new(&job.workdir).code()).unwrap();
    let python = berth_core::conda::PythonEnv {
        python: Some("3.11".into()),
        requirements: vec!["six==1.16.0".into()],
        skipped: Vec::new(),
    };
    job.environment = Some(berth_core::spec::environment::ResolvedEnvironment {
        source: "conda_file conda.yml".into(),
        image: None,
        python: Some(python.clone()),
    });
    let j = serde_json::to_value(build(&job, "work", None, "reg/berth:1").unwrap().job).unwrap();
    let pod = &j["spec"]["template"]["spec"];
    let bin = pod["initContainers"].as_array().unwrap().last().unwrap();
    assert_eq!(
        bin["command"],
        json!([
            "cp",
            "/usr/local/bin/berth",
            "/usr/local/bin/uv",
            "/berth/bin/"
        ])
    );
    let c = &pod["containers"][0];
    assert!(
        c["command"]
            .to_string()
            .contains("\"--env-dir\",\"/berth/env\""),
        "{}",
        c["command"]
    );
    let env = c["env"].as_array().unwrap();
    let carried = env.iter().find(|e| e["name"] == PYTHON_ENV_VAR).unwrap();
    let back: berth_core::conda::PythonEnv =
        serde_json::from_str(carried["value"].as_str().unwrap()).unwrap();
    assert_eq!(back, python);
}

fn last(command: &serde_json::Value) -> &str {
    command
        .as_array()
        .and_then(|a| a.last())
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}
