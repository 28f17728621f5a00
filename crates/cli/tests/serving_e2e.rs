//! End-to-end online endpoints: the seed's endpoint and deployments served by `berth runtime`
//! replicas behind the in-process router, driven through the CLI.

#![allow(clippy::unwrap_used)]

mod support;

use support::serving::*;
use support::*;

#[test]
fn seed_endpoint_serves_blue_and_green() {
    let s = Server::start(&[]);
    let seed = seed_dir();
    prepare(&s);
    let out = s.ok_in(
        &seed,
        &["online-deployment", "create", "--file", "deployment.yaml"],
    );
    assert!(
        text(&out.stderr).contains("Deployment blue is ready (2 replica(s)"),
        "{}",
        text(&out.stderr)
    );

    // Models are immutable and stored by content.
    let out = s.cli_in(
        &seed,
        &[
            "model",
            "create",
            "--name",
            "my-model",
            "--version",
            "1",
            "--path",
            "./model",
        ],
    );
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let v1 = s.json(&["model", "show", "--name", "my-model", "--version", "1"]);
    s.ok_in(
        &seed,
        &[
            "model",
            "create",
            "--name",
            "my-model",
            "--version",
            "2",
            "--path",
            "./model",
        ],
    );
    let v2 = s.json(&["model", "show", "--name", "my-model", "--version", "2"]);
    assert_eq!(v1["path"], v2["path"], "the same files are stored once");
    assert!(
        v1["path"].as_str().unwrap().contains("blobs/sha256-"),
        "{v1}"
    );

    // No traffic yet: 404 with a reason.
    let out = s.cli_in(
        &seed,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "-r",
            "sample-request.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("404")
            && text(&out.stderr).contains("no deployment with traffic"),
        "{}",
        text(&out.stderr)
    );

    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=100",
        ],
    );
    let out = s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "--request-file",
            "sample-request.json",
        ],
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["predictions"], serde_json::json!([2.5, 1.5]));
    assert_eq!(answer["variant"], "blue");

    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "create",
            "--file",
            "green-deployment.yaml",
        ],
    );
    let out = s.cli_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=90 red=10",
        ],
    );
    assert!(
        text(&out.stderr).contains("traffic names deployment `red`"),
        "{}",
        text(&out.stderr)
    );
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=90 green=10",
        ],
    );
    let ep = s.json(&[
        "online-endpoint",
        "update",
        "-n",
        "my-model-endpoint",
        "--mirror-traffic",
        "green=20",
    ]);
    assert_eq!(ep["mirror_traffic"], serde_json::json!({"green": 20}));
    let out = s.cli_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--mirror-traffic",
            "red=10",
        ],
    );
    assert!(text(&out.stderr).contains("`red`"), "{}", text(&out.stderr));
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--mirror-traffic",
            "green=0",
        ],
    );
    let out = s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "-r",
            "sample-request.json",
            "--deployment-name",
            "green",
        ],
    );
    assert!(
        text(&out.stdout).contains("\"variant\": \"green\""),
        "{}",
        text(&out.stdout)
    );

    // The raw scoring URI, as curl would use it.
    let (uri, key, _) = endpoint_access(&s);
    let auth = format!("Bearer {key}");
    let body = std::fs::read_to_string(seed.join("sample-request.json")).unwrap();
    let (status, answer) = http_post(
        &uri,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        http_post(&uri, &[("Authorization", "Bearer wrong")], &body).0,
        401
    );
    let (status, answer) = http_post(&uri, &[("Authorization", &auth)], "not json");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("not valid JSON"), "{answer}");

    // Key rotation: the old primary stops working, the secondary keeps working.
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "regenerate-keys",
            "-n",
            "my-model-endpoint",
            "--key-type",
            "primary",
        ],
    );
    assert_eq!(http_post(&uri, &[("Authorization", &auth)], &body).0, 401);
    let secondary = s.tsv(
        &seed,
        &[
            "online-endpoint",
            "get-credentials",
            "-n",
            "my-model-endpoint",
        ],
        "secondaryKey",
    );
    assert_eq!(
        http_post(
            &uri,
            &[("Authorization", &format!("Bearer {secondary}"))],
            &body
        )
        .0,
        200
    );

    let logs = text(
        &s.ok_in(
            &seed,
            &[
                "online-deployment",
                "get-logs",
                "-n",
                "blue",
                "--endpoint-name",
                "my-model-endpoint",
                "--lines",
                "10",
            ],
        )
        .stdout,
    );
    assert!(
        logs.contains("==> replica 1 <==") && logs.contains("berth runtime ready"),
        "{logs}"
    );

    let out = s.cli_in(
        &seed,
        &[
            "online-deployment",
            "delete",
            "-n",
            "green",
            "--endpoint-name",
            "my-model-endpoint",
        ],
    );
    assert!(
        text(&out.stderr).contains("still gets 10%"),
        "{}",
        text(&out.stderr)
    );
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=100",
        ],
    );
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "delete",
            "-n",
            "green",
            "--endpoint-name",
            "my-model-endpoint",
        ],
    );
    let ep = s.json(&["online-endpoint", "show", "-n", "my-model-endpoint"]);
    assert_eq!(ep["traffic"], serde_json::json!({"blue": 100}));
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "delete",
            "-n",
            "my-model-endpoint",
            "--yes",
        ],
    );
    assert_eq!(
        http_post(
            &uri,
            &[("Authorization", &format!("Bearer {secondary}"))],
            &body
        )
        .0,
        404
    );
}

#[test]
fn a_failing_init_fails_the_deployment_with_the_python_error() {
    let s = Server::start(&[]);
    prepare(&s);
    let dir = s.home.path().join("bad");
    write(
        &dir,
        "code/score.py",
        "def init():\n    raise RuntimeError('model file is corrupt')\n\ndef run(raw):\n    return raw\n",
    );
    write(
        &dir,
        "dep.yaml",
        "name: broken\nendpoint_name: my-model-endpoint\nmodel: azureml:my-model:1\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\ninstance_count: 1\n",
    );
    let out = s.cli_in(&dir, &["online-deployment", "create", "-f", "dep.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "deployment broken failed: init() failed: RuntimeError: model file is corrupt"
        ),
        "{err}"
    );
    assert!(err.contains("get-logs"), "{err}");
    let logs = text(
        &s.ok_in(
            &dir,
            &[
                "online-deployment",
                "get-logs",
                "-n",
                "broken",
                "-e",
                "my-model-endpoint",
            ],
        )
        .stdout,
    );
    assert!(
        logs.contains("Traceback") && logs.contains("RuntimeError: model file is corrupt"),
        "{logs}"
    );

    write(
        &dir,
        "missing.yaml",
        "name: x\nendpoint_name: my-model-endpoint\nmodel: azureml:nope:3\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\n",
    );
    let err = text(
        &s.cli_in(&dir, &["online-deployment", "create", "-f", "missing.yaml"])
            .stderr,
    );
    assert!(
        err.starts_with("error: missing.yaml:3:1: model `nope:3` does not exist"),
        "{err}"
    );
    write(
        &dir,
        "noscript.yaml",
        "name: y\nendpoint_name: my-model-endpoint\ncode_configuration:\n  code: ./code\n  scoring_script: missing.py\n",
    );
    let err = text(
        &s.cli_in(
            &dir,
            &["online-deployment", "create", "-f", "noscript.yaml"],
        )
        .stderr,
    );
    assert!(err.contains("missing.py does not exist"), "{err}");
}

#[test]
fn a_no_code_onnx_deployment_answers_like_the_reference() {
    let s = Server::start(&[]);
    let ex = seed_dir().join("../onnx");
    s.ok_in(&ex, &["online-endpoint", "create", "-f", "endpoint.yaml"]);
    let out = s.ok_in(
        &ex,
        &[
            "online-deployment",
            "create",
            "-f",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    assert!(
        text(&out.stderr).contains("is ready"),
        "{}",
        text(&out.stderr)
    );
    let out = s.ok_in(
        &ex,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "onnx-endpoint",
            "-r",
            "sample-request.json",
        ],
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ex.join("expected-output.json")).unwrap())
            .unwrap();
    for (g, w) in got["y"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .zip(
            want["y"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap()),
        )
    {
        assert!(
            (g.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 1e-5,
            "{got} vs {want}"
        );
    }
    let logs = text(
        &s.ok_in(
            &ex,
            &[
                "online-deployment",
                "get-logs",
                "-n",
                "native",
                "-e",
                "onnx-endpoint",
            ],
        )
        .stdout,
    );
    assert!(logs.contains("serving the ONNX model natively"), "{logs}");
}

#[test]
fn parallel_deployments_of_one_name_serve_the_winners_code() {
    let s = Server::start(&[]);
    prepare(&s);
    let base = s.home.path().join("race");
    for side in ["a", "b"] {
        write(
            &base.join(side),
            "code/score.py",
            &format!("def init():\n    pass\n\ndef run(raw):\n    return {{'side': '{side}'}}\n"),
        );
        write(
            &base.join(side),
            "dep.yaml",
            "name: racer\nendpoint_name: my-model-endpoint\nmodel: azureml:my-model:1\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\ninstance_count: 1\n",
        );
    }
    let home = s.home.path().to_path_buf();
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let (home, cwd) = (home.clone(), base.join(["a", "b"][i % 2]));
            std::thread::spawn(move || {
                let args = ["online-deployment", "create", "-f", "dep.yaml"];
                let out = std::process::Command::new(BERTH)
                    .args(args.iter().chain(&["--all-traffic"]))
                    .current_dir(&cwd)
                    .env("BERTH_HOME", &home)
                    .output()
                    .unwrap();
                (["a", "b"][i % 2], out)
            })
        })
        .collect();
    let outs: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let winners: Vec<_> = outs.iter().filter(|(_, o)| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one submission takes the name");
    let side = winners[0].0;
    write(&base, "req.json", "{\"data\": [[1, 2]]}");
    let out = s.ok_in(
        &base,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "-r",
            "req.json",
        ],
    );
    let answer = text(&out.stdout);
    assert!(
        answer.contains(&format!("\"side\": \"{side}\""))
            || answer.contains(&format!("\"side\":\"{side}\"")),
        "the winner was `{side}` but the endpoint answers {answer}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(home.join("deployments/my-model-endpoint/racer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "losers left snapshots: {leftovers:?}");
}

#[test]
fn a_replica_cannot_read_the_servers_token_or_environment() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().canonicalize().unwrap();
    let s = Server::start_in(home, &[], &[("SERVER_ONLY_SECRET", "hunter2")]);
    prepare(&s);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "code/score.py",
        &format!(
            "import os\n\ndef init():\n    pass\n\ndef run(raw):\n    try:\n        open('{}/token').read()\n        token = 'read'\n    except PermissionError:\n        token = 'denied'\n    return {{'token': token, 'secret': os.environ.get('SERVER_ONLY_SECRET', 'unset')}}\n",
            h.display()
        ),
    );
    write(
        dir.path(),
        "dep.yaml",
        "name: nosy\nendpoint_name: my-model-endpoint\nmodel: azureml:my-model:1\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\ninstance_count: 1\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "online-deployment",
            "create",
            "-f",
            "dep.yaml",
            "--all-traffic",
        ],
    );
    write(dir.path(), "req.json", "{}");
    let out = s.ok_in(
        dir.path(),
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "-r",
            "req.json",
        ],
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["token"], "denied", "{answer}");
    assert_eq!(answer["secret"], "unset", "{answer}");
}
