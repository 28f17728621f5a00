//! Online endpoints under load: key rotation, a replica crash, a rolling update and
//! autoscaling, each with requests flowing from client threads.

#![allow(clippy::unwrap_used)]

mod support;

use support::serving::*;
use support::*;

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
    let victim = pids()
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
    s.ok_in(
        &dir,
        &[
            "online-deployment",
            "update",
            "-f",
            "blue-v2.yaml",
            "--no-wait",
        ],
    );
    let out = s.cli_in(
        &dir,
        &[
            "online-deployment",
            "update",
            "-f",
            "blue-v2.yaml",
            "--no-wait",
        ],
    );
    assert!(
        text(&out.stderr).contains("is Updating already"),
        "{}",
        text(&out.stderr)
    );
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
    let uri = s.tsv(
        &dir,
        &["online-endpoint", "show", "-n", "my-model-endpoint"],
        "scoring_uri",
    );
    let key = s.tsv(
        &dir,
        &[
            "online-endpoint",
            "get-credentials",
            "-n",
            "my-model-endpoint",
        ],
        "primaryKey",
    );
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
