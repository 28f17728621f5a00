//! End-to-end: environments built by uv for real (packages from PyPI), cached, shared,
//! registered, and what a failed or canceled build leaves behind.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::path::Path;

use support::{Server, text, write};

/// A job folder whose script prints the version of `six` it imported.
fn six_job(dir: &Path, environment: &str) {
    write(
        dir,
        "src/show.py",
        "import six, sys\nprint('six', six.__version__, 'from', sys.prefix)\n",
    );
    write(
        dir,
        "job.yml",
        &format!(
            "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\ncommand: python show.py\ncode: src\nenvironment: {environment}\ncompute: azureml:local\n"
        ),
    );
}

fn conda(six: &str) -> String {
    format!(
        "name: six-env\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip:\n    - six=={six}\n"
    )
}

fn log_of(s: &Server, job: &str) -> String {
    std::fs::read_to_string(
        s.home
            .path()
            .join(format!("jobs/{job}/user_logs/std_log.txt")),
    )
    .unwrap_or_default()
}

/// Finished environments in the cache (the staging folder not counted).
fn built_envs(s: &Server) -> Vec<String> {
    std::fs::read_dir(s.home.path().join("envs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

fn staging_is_empty(s: &Server) -> bool {
    std::fs::read_dir(s.home.path().join("envs/.building")).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn a_conda_file_is_built_once_and_the_next_job_reuses_it() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "conda.yml", &conda("1.16.0"));
    six_job(
        dir.path(),
        "\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n  conda_file: conda.yml",
    );
    for name in ["first", "second"] {
        s.ok_in(
            dir.path(),
            &[
                "job", "create", "--file", "job.yml", "--name", name, "--stream",
            ],
        );
    }
    let (first, second) = (log_of(&s, "first"), log_of(&s, "second"));
    assert!(first.contains("[berth] building environment"), "{first}");
    assert!(first.contains("six 1.16.0 from"), "{first}");
    assert!(second.contains("is cached at"), "{second}");
    assert!(!second.contains("building environment"), "{second}");
    assert!(second.contains("six 1.16.0 from"), "{second}");
    assert_eq!(built_envs(&s).len(), 1);
}

#[test]
fn two_jobs_needing_the_same_new_environment_share_one_build() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "conda.yml", &conda("1.15.0"));
    six_job(dir.path(), "\n  conda_file: conda.yml");
    for name in ["a", "b"] {
        s.ok_in(
            dir.path(),
            &["job", "create", "--file", "job.yml", "--name", name],
        );
    }
    for name in ["a", "b"] {
        s.ok_in(dir.path(), &["job", "stream", "--name", name]);
    }
    let logs = [log_of(&s, "a"), log_of(&s, "b")];
    let builds = logs
        .iter()
        .filter(|l| l.contains("[berth] building environment"))
        .count();
    assert_eq!(builds, 1, "{logs:?}");
    assert!(
        logs.iter().all(|l| l.contains("six 1.15.0 from")),
        "{logs:?}"
    );
    assert_eq!(built_envs(&s).len(), 1);
}

#[test]
fn a_failed_build_fails_the_job_with_the_installers_error_and_caches_nothing() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    six_job(
        dir.path(),
        "\n  conda_file:\n    dependencies:\n      - python=3.11\n      - pip:\n        - berth-no-such-package-zz==1.0",
    );
    let out = s.cli_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yml", "--name", "bad", "--stream",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let job = s.status("bad");
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["failure_kind"], "PreparationFailed");
    let msg = job["status_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("berth-no-such-package-zz was not found in the package registry"),
        "{msg}"
    );
    assert!(built_envs(&s).is_empty());
    assert!(staging_is_empty(&s));
}

#[test]
fn cancel_during_the_build_ends_the_job_at_once_and_stops_the_installer() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // A package index that accepts the installer's connection and never answers.
    let index = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = index.local_addr().unwrap().port();
    six_job(
        dir.path(),
        &format!(
            "\n  conda_file:\n    dependencies:\n      - pip:\n        - --index-url http://127.0.0.1:{port}/simple\n        - six"
        ),
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "job.yml", "--name", "slow"],
    );
    // Bounded, so that a machine without uv fails here instead of waiting for ever.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(index.accept());
    });
    let (mut conn, _) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the installer never reached the index: is uv installed?")
        .unwrap();
    assert_eq!(s.status("slow")["status"], "Preparing");
    s.ok_in(dir.path(), &["job", "cancel", "--name", "slow"]);
    let out = s.cli_in(dir.path(), &["job", "stream", "--name", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(s.status("slow")["status"], "Canceled");
    // The installer was killed: its connection closes without it having sent more.
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(built_envs(&s).is_empty());
    assert!(staging_is_empty(&s));
}

#[test]
fn registered_environments_are_versioned_and_latest_is_the_last_registered() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (version, six) in [("1", "1.15.0"), ("2", "1.16.0")] {
        write(dir.path(), &format!("conda-{version}.yml"), &conda(six));
        write(
            dir.path(),
            &format!("env-{version}.yml"),
            &format!(
                "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: six-env\nversion: {version}\nimage: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\nconda_file: conda-{version}.yml\ndescription: six for tests\n"
            ),
        );
        s.ok_in(
            dir.path(),
            &[
                "environment",
                "create",
                "--file",
                &format!("env-{version}.yml"),
            ],
        );
    }
    let again = s.cli_in(
        dir.path(),
        &["environment", "create", "--file", "env-1.yml"],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("six-env:1` already exists"),
        "{}",
        text(&again.stderr)
    );
    let shown = s.json(&["environment", "show", "--name", "six-env"]);
    assert_eq!(shown["version"], "2");
    assert_eq!(shown["python"]["requirements"][0], "six==1.16.0");

    for (env, want) in [
        ("azureml:six-env@latest", "six 1.16.0"),
        ("azureml:six-env:1", "six 1.15.0"),
    ] {
        six_job(dir.path(), env);
        let name = if env.ends_with("latest") {
            "latest"
        } else {
            "one"
        };
        s.ok_in(
            dir.path(),
            &[
                "job", "create", "--file", "job.yml", "--name", name, "--stream",
            ],
        );
        let log = log_of(&s, name);
        assert!(log.contains(want), "{env}: {log}");
    }
}

#[test]
fn unknown_environments_and_docker_builds_are_refused_before_anything_is_stored() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    six_job(dir.path(), "azureml:nothing-here@latest");
    let out = s.cli_in(dir.path(), &["job", "create", "--file", "job.yml"]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("job.yml:4:")
            && err.contains("environment `nothing-here@latest` does not exist"),
        "{err}"
    );
    assert!(
        s.json(&["job", "list"])
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // Azure's curated environments cannot be fetched: recorded, the machine's Python runs.
    six_job(
        dir.path(),
        "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:1",
    );
    write(dir.path(), "src/show.py", "print('ran')\n");
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yml", "--name", "curated", "--stream",
        ],
    );
    assert!(log_of(&s, "curated").contains("is recorded but not built"));

    write(
        dir.path(),
        "env.yml",
        "name: docker-env\nversion: 1\nbuild:\n  path: docker-context\n",
    );
    let out = s.cli_in(dir.path(), &["environment", "create", "--file", "env.yml"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("env.yml:3:") && err.contains("not supported on the local compute"),
        "{err}"
    );
    assert!(
        s.json(&["environment", "list"])
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[test]
fn a_deployments_conda_file_is_built_and_its_replicas_import_from_it() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "score/score.py",
        "import json, sys, tomli_w\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'toml': tomli_w.dumps(json.loads(raw)), 'prefix': sys.prefix}\n",
    );
    write(
        dir.path(),
        "endpoint.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: toml-ep\nauth_mode: key\n",
    );
    write(
        dir.path(),
        "deployment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\nname: blue\nendpoint_name: toml-ep\ncode_configuration:\n  code: score\n  scoring_script: score.py\nenvironment:\n  image: mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest\n  conda_file:\n    dependencies:\n      - python=3.11\n      - pip:\n        - tomli-w==1.0.0\ninstance_count: 1\n",
    );
    write(dir.path(), "request.json", "{\"a\": 1}");
    s.ok_in(
        dir.path(),
        &["online-endpoint", "create", "--file", "endpoint.yml"],
    );
    s.ok_in(
        dir.path(),
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yml",
            "--all-traffic",
        ],
    );
    let out = s.ok_in(
        dir.path(),
        &[
            "online-endpoint",
            "invoke",
            "--name",
            "toml-ep",
            "--request-file",
            "request.json",
        ],
    );
    let answer = text(&out.stdout);
    assert!(answer.contains("a = 1"), "{answer}");
    assert!(
        answer.contains(&s.home.path().join("envs").display().to_string()),
        "{answer}"
    );
}
