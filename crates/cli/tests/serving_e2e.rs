//! End-to-end online endpoints: the seed's endpoint and deployments served by `berth runtime`
//! replicas behind the in-process router, driven through the CLI.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, http_post, seed_dir, text, write};

fn prepare(s: &Server) {
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &["instance-type", "apply", "-f", "instance-types.yaml"],
    );
    s.ok_in(
        &seed,
        &[
            "compute",
            "attach",
            "--type",
            "local",
            "--name",
            "aks-compute",
        ],
    );
    s.ok_in(
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
    s.ok_in(
        &seed,
        &["online-endpoint", "create", "--file", "endpoint.yaml"],
    );
}

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
    let uri = text(
        &s.ok_in(
            &seed,
            &[
                "online-endpoint",
                "show",
                "-n",
                "my-model-endpoint",
                "--query",
                "scoring_uri",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
    let key = text(
        &s.ok_in(
            &seed,
            &[
                "online-endpoint",
                "get-credentials",
                "-n",
                "my-model-endpoint",
                "--query",
                "primaryKey",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
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
    let secondary = text(
        &s.ok_in(
            &seed,
            &[
                "online-endpoint",
                "get-credentials",
                "-n",
                "my-model-endpoint",
                "--query",
                "secondaryKey",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
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

/// Sends `n` requests one after another; returns how many did not get 200.
fn load(
    uri: String,
    key: String,
    n: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let body = std::fs::read_to_string(seed_dir().join("sample-request.json")).unwrap();
        let auth = format!("Bearer {key}");
        let mut failed = 0;
        for _ in 0..n {
            if http_post(
                &uri,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .0 != 200
            {
                failed += 1;
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        failed
    })
}

fn wait_for(done: &std::sync::atomic::AtomicUsize, n: usize) {
    while done.load(std::sync::atomic::Ordering::Relaxed) < n {
        std::thread::yield_now();
    }
}

fn serve_blue(s: &Server) -> (String, String, String) {
    let seed = seed_dir();
    prepare(s);
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    let q = |field: &str, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--query", field, "-o", "tsv"]);
        text(&s.ok_in(&seed, &a).stdout).trim().to_string()
    };
    let uri = q(
        "scoring_uri",
        &["online-endpoint", "show", "-n", "my-model-endpoint"],
    );
    let primary = q(
        "primaryKey",
        &[
            "online-endpoint",
            "get-credentials",
            "-n",
            "my-model-endpoint",
        ],
    );
    let secondary = q(
        "secondaryKey",
        &[
            "online-endpoint",
            "get-credentials",
            "-n",
            "my-model-endpoint",
        ],
    );
    (uri, primary, secondary)
}

#[test]
fn key_rotation_under_load_fails_no_request() {
    let s = Server::start(&[]);
    let (uri, _, secondary) = serve_blue(&s);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = load(uri, secondary, 600, std::sync::Arc::clone(&done));
    wait_for(&done, 100);
    for _ in 0..3 {
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
    }
    assert_eq!(
        worker.join().unwrap(),
        0,
        "requests with the secondary key failed during rotation"
    );
}

#[test]
fn a_replica_crash_under_load_costs_almost_nothing() {
    let s = Server::start(&[]);
    let (uri, primary, _) = serve_blue(&s);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = load(uri, primary, 2000, std::sync::Arc::clone(&done));
    wait_for(&done, 200);
    // kill -9 one replica (a `berth runtime` whose ready file is replica-0's).
    let victim = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()))
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("runtime")
                && cmd.contains(&*s.home.path().to_string_lossy())
                && cmd.contains("replica-0.addr")
        })
        .expect("replica-0 process");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let failed = worker.join().unwrap();
    assert!(
        failed <= 2,
        "{failed} of 2000 requests failed after a replica crash (need ≥ 99.9% success)"
    );
    // The replica comes back (liveness restart) and the deployment has two ready replicas again.
    let mut ready = 0;
    for _ in 0..200 {
        ready = s.json(&[
            "online-deployment",
            "show",
            "-n",
            "blue",
            "-e",
            "my-model-endpoint",
        ])["ready_replicas"]
            .as_u64()
            .unwrap_or(0);
        if ready == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(ready, 2, "the crashed replica was not restarted");
}

#[test]
fn a_rolling_update_under_load_fails_no_request() {
    let s = Server::start(&[]);
    let (uri, primary, _) = serve_blue(&s);
    let dir = s.home.path().join("v2");
    let code = seed_dir().join("score");
    write(
        &dir,
        "blue-v2.yaml",
        &format!(
            "name: blue\nendpoint_name: my-model-endpoint\nmodel: azureml:my-model:1\ncode_configuration:\n  code: {}\n  scoring_script: score.py\nenvironment_variables:\n  MODEL_VARIANT: blue-v2\ninstance_type: cpu-small\ninstance_count: 2\nrequest_settings:\n  request_timeout_ms: 3000\n  max_concurrent_requests_per_instance: 10\n",
            code.display()
        ),
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = load(uri, primary, 1500, std::sync::Arc::clone(&done));
    wait_for(&done, 100);
    let out = s.ok_in(&dir, &["online-deployment", "update", "-f", "blue-v2.yaml"]);
    assert!(
        text(&out.stderr).contains("Updating deployment blue"),
        "{}",
        text(&out.stderr)
    );
    let answer = text(
        &s.ok_in(
            &seed_dir(),
            &[
                "online-endpoint",
                "invoke",
                "-n",
                "my-model-endpoint",
                "-r",
                "sample-request.json",
            ],
        )
        .stdout,
    );
    assert!(answer.contains("blue-v2"), "{answer}");
    assert_eq!(
        worker.join().unwrap(),
        0,
        "requests failed during the rolling update"
    );
    let d = s.json(&[
        "online-deployment",
        "show",
        "-n",
        "blue",
        "-e",
        "my-model-endpoint",
    ]);
    assert_eq!(d["provisioning_state"], "Succeeded");
    // A second update while one is in progress is refused.
    s.ok_in(&dir, &["online-deployment", "update", "-f", "blue-v2.yaml", "--no-wait"]);
    let out = s.cli_in(&dir, &["online-deployment", "update", "-f", "blue-v2.yaml", "--no-wait"]);
    assert!(text(&out.stderr).contains("is Updating already"), "{}", text(&out.stderr));
}

#[test]
fn target_utilization_scales_out_under_load() {
    let s = Server::start(&[]);
    prepare(&s);
    let dir = s.home.path().join("auto");
    write(
        &dir,
        "code/score.py",
        "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(0.05)\n    return {\"ok\": True}\n",
    );
    write(
        &dir,
        "dep.yaml",
        "name: auto\nendpoint_name: my-model-endpoint\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\nscale_settings:\n  type: target_utilization\n  min_instances: 1\n  max_instances: 3\n  target_utilization_percentage: 50\n  polling_interval: 1\nrequest_settings:\n  request_timeout_ms: 5000\n  max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 5000\n",
    );
    s.ok_in(
        &dir,
        &[
            "online-deployment",
            "create",
            "-f",
            "dep.yaml",
            "--all-traffic",
        ],
    );
    let show = || {
        s.json(&[
            "online-deployment",
            "show",
            "-n",
            "auto",
            "-e",
            "my-model-endpoint",
        ])
    };
    assert_eq!(show()["ready_replicas"], 1);
    let uri = text(
        &s.ok_in(
            &dir,
            &[
                "online-endpoint",
                "show",
                "-n",
                "my-model-endpoint",
                "--query",
                "scoring_uri",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
    let key = text(
        &s.ok_in(
            &dir,
            &[
                "online-endpoint",
                "get-credentials",
                "-n",
                "my-model-endpoint",
                "--query",
                "primaryKey",
                "-o",
                "tsv",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Four clients against one replica with one slot: utilisation far above 50%.
    let clients: Vec<_> = (0..4)
        .map(|_| load(uri.clone(), key.clone(), 80, std::sync::Arc::clone(&done)))
        .collect();
    let mut ready = 1;
    while done.load(std::sync::atomic::Ordering::Relaxed) < 320 && ready < 2 {
        ready = show()["ready_replicas"].as_u64().unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let failed: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(
        ready >= 2,
        "the autoscaler did not add a replica under load"
    );
    assert_eq!(failed, 0, "requests failed while scaling out");
    let metrics = s.metrics();
    assert!(metrics.contains("berth_router_autoscale_decisions_total{endpoint=\"my-model-endpoint\",deployment=\"auto\",direction=\"out\"}"), "{metrics}");
}

fn replica_pids(home: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()))
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            let home = home.to_string_lossy();
            !zombie
                && args.get(1).is_some_and(|a| a == "runtime")
                && args.iter().any(|a| a.contains(&*home))
        })
        .collect()
}

#[test]
fn deployments_come_back_after_the_server_is_killed() {
    let s = Server::start(&[]);
    let (_, _, _) = serve_blue(&s);
    let before = replica_pids(s.home.path());
    assert_eq!(before.len(), 2, "{before:?}");
    let home = s.kill9();
    // The replicas die with their server (no orphans holding ports).
    let mut left = replica_pids(home.path());
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = replica_pids(home.path());
    }
    assert!(left.is_empty(), "replicas outlived the server: {left:?}");
    let s = Server::start_in(home, &[], &[]);
    let mut answer = String::new();
    for _ in 0..100 {
        let out = s.cli_in(
            &seed_dir(),
            &[
                "online-endpoint",
                "invoke",
                "-n",
                "my-model-endpoint",
                "-r",
                "sample-request.json",
            ],
        );
        if out.status.success() {
            answer = text(&out.stdout);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        answer.contains("predictions"),
        "the endpoint did not come back: {answer}"
    );
}

#[test]
fn aml_token_endpoints_take_signed_tokens() {
    let s = Server::start(&[]);
    prepare(&s);
    let seed = seed_dir();
    let dir = s.home.path().join("tok");
    write(
        &dir,
        "ep.yaml",
        "name: tok-ep\ncompute: azureml:aks-compute\nauth_mode: aml_token\n",
    );
    s.ok_in(&dir, &["online-endpoint", "create", "-f", "ep.yaml"]);
    let dep = std::fs::read_to_string(seed.join("deployment.yaml"))
        .unwrap()
        .replace("endpoint_name: my-model-endpoint", "endpoint_name: tok-ep")
        .replace(
            "code: ./score",
            &format!("code: {}", seed.join("score").display()),
        )
        .replace("instance_count: 2", "instance_count: 1");
    write(&dir, "dep.yaml", &dep);
    s.ok_in(
        &dir,
        &[
            "online-deployment",
            "create",
            "-f",
            "dep.yaml",
            "--all-traffic",
        ],
    );
    let out = s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "tok-ep",
            "-r",
            "sample-request.json",
        ],
    );
    assert!(
        text(&out.stdout).contains("predictions"),
        "{}",
        text(&out.stdout)
    );
    let creds = s.json(&["online-endpoint", "get-credentials", "-n", "tok-ep"]);
    let token = creds["accessToken"].as_str().unwrap();
    assert_eq!(creds["tokenType"], "Bearer");
    assert!(creds["expiryTimeUtc"].is_string() && creds["refreshAfterTimeUtc"].is_string());
    let uri = s.json(&["online-endpoint", "show", "-n", "tok-ep"])["scoring_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let body = std::fs::read_to_string(seed.join("sample-request.json")).unwrap();
    assert_eq!(
        http_post(
            &uri,
            &[("Authorization", &format!("Bearer {token}"))],
            &body
        )
        .0,
        200
    );
    let forged = token.replacen("bt1.tok-ep.", "bt1.tok-ep.9", 1);
    let (status, answer) = http_post(
        &uri,
        &[("Authorization", &format!("Bearer {forged}"))],
        &body,
    );
    assert_eq!(status, 401, "{answer}");
    // A token for one endpoint does not open another.
    let keys_ep = s.json(&["online-endpoint", "show", "-n", "my-model-endpoint"])["scoring_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http_post(
            &keys_ep,
            &[("Authorization", &format!("Bearer {token}"))],
            &body
        )
        .0,
        401
    );
    let out = s.cli_in(
        &seed,
        &["online-endpoint", "regenerate-keys", "-n", "tok-ep"],
    );
    assert!(
        text(&out.stderr).contains("uses aml_token and has no keys"),
        "{}",
        text(&out.stderr)
    );
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
fn scoring_over_tls_from_pem_files() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let home = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        home,
        &[
            "--scoring-tls-cert",
            &cert.to_string_lossy(),
            "--scoring-tls-key",
            &key.to_string_lossy(),
        ],
        &[],
    );
    let ex = seed_dir().join("../onnx");
    s.ok_in(&ex, &["online-endpoint", "create", "-f", "endpoint.yaml"]);
    s.ok_in(
        &ex,
        &[
            "online-deployment",
            "create",
            "-f",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    let uri = s.json(&["online-endpoint", "show", "-n", "onnx-endpoint"])["scoring_uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(uri.starts_with("https://"), "{uri}");
    let key = s.json(&["online-endpoint", "get-credentials", "-n", "onnx-endpoint"])["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, version) = rt.block_on(async {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        let body = std::fs::read_to_string(ex.join("sample-request.json")).unwrap();
        let resp = client
            .post(&uri)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.version())
    });
    assert_eq!(status, 200);
    assert_eq!(version, reqwest::Version::HTTP_2, "ALPN should pick HTTP/2");
    let out = std::process::Command::new(support::BERTH)
        .args(["online-endpoint", "invoke", "-n", "onnx-endpoint", "-r"])
        .arg(ex.join("sample-request.json"))
        .env("BERTH_HOME", s.home.path())
        .env("BERTH_CA_CERT", &cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"y\""), "{}", text(&out.stdout));
}

#[test]
fn plain_http_scoring_off_loopback_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::BERTH)
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--scoring-listen",
            "0.0.0.0:0",
        ])
        .env("BERTH_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not on loopback and has no TLS")
            && err.contains("allow_insecure_connections"),
        "{err}"
    );
}

#[test]
fn a_standalone_router_follows_the_server() {
    use std::io::BufRead;
    let s = Server::start(&[]);
    let ex = seed_dir().join("../onnx");
    s.ok_in(&ex, &["online-endpoint", "create", "-f", "endpoint.yaml"]);
    s.ok_in(
        &ex,
        &[
            "online-deployment",
            "create",
            "-f",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    let mut router = std::process::Command::new(support::BERTH)
        .args(["router", "--listen", "127.0.0.1:0"])
        .env("BERTH_HOME", s.home.path())
        .env("BERTH_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(router.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("berth router ready on ").map(str::to_string))
        .expect("router ready line");
    std::thread::spawn(move || for _ in lines {});
    let uri = format!("{addr}/api/v1/endpoint/onnx-endpoint/score");
    let creds = s.json(&["online-endpoint", "get-credentials", "-n", "onnx-endpoint"]);
    let (primary, secondary) = (
        creds["primaryKey"].as_str().unwrap().to_string(),
        creds["secondaryKey"].as_str().unwrap().to_string(),
    );
    let body = std::fs::read_to_string(ex.join("sample-request.json")).unwrap();
    let (status, answer) = http_post(
        &uri,
        &[("Authorization", &format!("Bearer {primary}"))],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"y\""), "{answer}");
    // A change on the server reaches the router by long-poll.
    s.ok_in(
        &ex,
        &[
            "online-endpoint",
            "regenerate-keys",
            "-n",
            "onnx-endpoint",
            "--key-type",
            "primary",
        ],
    );
    let mut old_key_status = 200;
    for _ in 0..200 {
        old_key_status = http_post(
            &uri,
            &[("Authorization", &format!("Bearer {primary}"))],
            &body,
        )
        .0;
        if old_key_status == 401 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(old_key_status, 401, "the router did not learn the new keys");
    assert_eq!(
        http_post(
            &uri,
            &[("Authorization", &format!("Bearer {secondary}"))],
            &body
        )
        .0,
        200
    );
    let _ = router.kill();
    let _ = router.wait();
}
