//! End-to-end online endpoints: the seed's endpoint and deployments served by `berth runtime`
//! replicas behind the in-process router, driven through the CLI.

#![allow(clippy::unwrap_used)]

mod support;

use support::serving::*;
use support::*;

/// `berth online-endpoint update -n my-model-endpoint <flag> <value>`.
fn update_endpoint(s: &Server, flag: &str, value: &str) -> std::process::Output {
    s.cli_in(
        &seed_dir(),
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            flag,
            value,
        ],
    )
}

/// The seed's green deployment beside blue (which has all the traffic).
fn serve_blue_and_green(s: &Server) -> (String, String, String) {
    let access = serve_blue(s);
    s.ok_in(
        &seed_dir(),
        &[
            "online-deployment",
            "create",
            "--file",
            "green-deployment.yaml",
        ],
    );
    access
}

fn sample_request() -> String {
    std::fs::read_to_string(seed_dir().join("sample-request.json")).unwrap()
}

#[test]
fn the_seed_deployment_says_when_its_replicas_are_ready() {
    let s = Server::start(&[]);
    prepare(&s);
    let out = s.ok_in(
        &seed_dir(),
        &["online-deployment", "create", "--file", "deployment.yaml"],
    );
    assert!(
        text(&out.stderr).contains("Deployment blue is ready (2 replica(s)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn models_are_immutable_and_their_files_stored_once() {
    let s = Server::start(&[]);
    prepare(&s);
    let create = |version: &str| {
        s.cli_in(
            &seed_dir(),
            &[
                "model",
                "create",
                "--name",
                "my-model",
                "--version",
                version,
                "--path",
                "./model",
            ],
        )
    };
    let again = create("1");
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert!(create("2").status.success());
    let v1 = s.json(&["model", "show", "--name", "my-model", "--version", "1"]);
    let v2 = s.json(&["model", "show", "--name", "my-model", "--version", "2"]);
    assert_eq!(v1["path"], v2["path"], "the same files are stored once");
    assert!(
        v1["path"].as_str().unwrap().contains("blobs/sha256-"),
        "{v1}"
    );
}

#[test]
fn an_endpoint_without_traffic_answers_404_with_a_reason() {
    let s = Server::start(&[]);
    prepare(&s);
    s.ok_in(
        &seed_dir(),
        &["online-deployment", "create", "--file", "deployment.yaml"],
    );
    let out = invoke(&s, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("404") && err.contains("no deployment with traffic"),
        "{err}"
    );
}

#[test]
fn traffic_goes_where_the_split_says() {
    let s = Server::start(&[]);
    serve_blue_and_green(&s);
    let answer: serde_json::Value = serde_json::from_slice(&invoke(&s, &[]).stdout).unwrap();
    assert_eq!(answer["predictions"], serde_json::json!([2.5, 1.5]));
    assert_eq!(answer["variant"], "blue");
    let refused = update_endpoint(&s, "--traffic", "blue=90 red=10");
    assert!(
        text(&refused.stderr).contains("traffic names deployment `red`"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        update_endpoint(&s, "--traffic", "blue=90 green=10")
            .status
            .success()
    );
    let green = invoke(&s, &["--deployment-name", "green"]);
    assert!(
        text(&green.stdout).contains("\"variant\": \"green\""),
        "{}",
        text(&green.stdout)
    );
}

#[test]
fn mirror_traffic_names_only_existing_deployments() {
    let s = Server::start(&[]);
    serve_blue_and_green(&s);
    let ep = s.json(&[
        "online-endpoint",
        "update",
        "-n",
        "my-model-endpoint",
        "--mirror-traffic",
        "green=20",
    ]);
    assert_eq!(ep["mirror_traffic"], serde_json::json!({"green": 20}));
    let refused = update_endpoint(&s, "--mirror-traffic", "red=10");
    assert!(
        text(&refused.stderr).contains("`red`"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        update_endpoint(&s, "--mirror-traffic", "green=0")
            .status
            .success()
    );
}

#[test]
fn the_scoring_uri_checks_the_key_and_the_body() {
    let s = Server::start(&[]);
    let (uri, key, _) = serve_blue(&s);
    let auth = format!("Bearer {key}");
    let body = sample_request();
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, answer) = http_post(&uri, &json, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        http_post(&uri, &[("Authorization", "Bearer wrong")], &body).0,
        401
    );
    let (status, answer) = http_post(&uri, &[("Authorization", &auth)], "not json");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("not valid JSON"), "{answer}");
}

#[test]
fn a_regenerated_primary_key_stops_working_and_the_secondary_keeps_working() {
    let s = Server::start(&[]);
    let (uri, primary, secondary) = serve_blue(&s);
    let body = sample_request();
    s.ok_in(
        &seed_dir(),
        &[
            "online-endpoint",
            "regenerate-keys",
            "-n",
            "my-model-endpoint",
            "--key-type",
            "primary",
        ],
    );
    let bearer = |k: &str| format!("Bearer {k}");
    assert_eq!(
        http_post(&uri, &[("Authorization", &bearer(&primary))], &body).0,
        401
    );
    assert_eq!(
        http_post(&uri, &[("Authorization", &bearer(&secondary))], &body).0,
        200
    );
}

#[test]
fn deployment_logs_show_each_replica() {
    let s = Server::start(&[]);
    serve_blue(&s);
    let out = s.ok_in(
        &seed_dir(),
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
    );
    let logs = text(&out.stdout);
    assert!(
        logs.contains("==> replica 1 <==") && logs.contains("berth runtime ready"),
        "{logs}"
    );
}

#[test]
fn a_deployment_with_traffic_is_kept_until_its_traffic_moves() {
    let s = Server::start(&[]);
    serve_blue_and_green(&s);
    assert!(
        update_endpoint(&s, "--traffic", "blue=90 green=10")
            .status
            .success()
    );
    let delete_green = || {
        s.cli_in(
            &seed_dir(),
            &[
                "online-deployment",
                "delete",
                "-n",
                "green",
                "--endpoint-name",
                "my-model-endpoint",
            ],
        )
    };
    let refused = delete_green();
    assert!(
        text(&refused.stderr).contains("still gets 10%"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        update_endpoint(&s, "--traffic", "blue=100")
            .status
            .success()
    );
    assert!(delete_green().status.success());
    let ep = s.json(&["online-endpoint", "show", "-n", "my-model-endpoint"]);
    assert_eq!(ep["traffic"], serde_json::json!({"blue": 100}));
}

#[test]
fn a_deleted_endpoint_stops_scoring() {
    let s = Server::start(&[]);
    let (uri, key, _) = serve_blue(&s);
    s.ok_in(
        &seed_dir(),
        &[
            "online-endpoint",
            "delete",
            "-n",
            "my-model-endpoint",
            "--yes",
        ],
    );
    let status = http_post(
        &uri,
        &[("Authorization", &format!("Bearer {key}"))],
        &sample_request(),
    )
    .0;
    assert_eq!(status, 404);
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
