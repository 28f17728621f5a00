//! Operating online endpoints: token auth, server restarts, TLS, and the standalone router.

#![allow(clippy::unwrap_used)]

mod support;

use support::serving::*;
use support::*;

#[test]
fn replicas_outlive_a_killed_server_and_the_next_one_adopts_them() {
    let s = Server::start(&[]);
    let (_, _, _) = serve_blue(&s);
    let mut before = replica_pids(s.home.path());
    before.sort_unstable();
    assert_eq!(before.len(), 2, "{before:?}");
    let home = s.kill9();
    let mut alive = replica_pids(home.path());
    alive.sort_unstable();
    assert_eq!(alive, before, "the replicas died with their server");
    let s = Server::start_in(home, &[], &[]);
    let mut answer = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
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
    let mut after = replica_pids(s.home.path());
    after.sort_unstable();
    assert_eq!(after, before, "the restarted server started new replicas");
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
    let ex = serve_onnx(&s);
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
    let out = std::process::Command::new(BERTH)
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
    let out = std::process::Command::new(BERTH)
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
    let s = Server::start(&[]);
    let (router, uri, primary) = onnx_behind_a_router(&s);
    let ex = seed_dir().join("../onnx");
    let secondary =
        s.json(&["online-endpoint", "get-credentials", "-n", "onnx-endpoint"])["secondaryKey"]
            .as_str()
            .unwrap()
            .to_string();
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
    drop(router);
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
fn a_replica_that_stops_answering_is_restarted_by_its_liveness_probe() {
    let s = Server::start(&[]);
    let ex = seed_dir().join("../onnx");
    s.ok_in(&ex, &["online-endpoint", "create", "-f", "endpoint.yaml"]);
    let dir = s.home.path().join("live");
    let dep = std::fs::read_to_string(ex.join("deployment.yaml"))
        .unwrap()
        .replace(
            "path: ./model",
            &format!("path: {}", ex.join("model").display()),
        )
        + "liveness_probe:\n  initial_delay: 1\n  period: 1\n  timeout: 1\n  failure_threshold: 2\n";
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
    let before = replica_pids(s.home.path());
    assert_eq!(before.len(), 1, "{before:?}");
    // Freeze the replica: it still accepts connections but never answers.
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &before[0].to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut after = Vec::new();
    for _ in 0..300 {
        after = replica_pids(s.home.path());
        if after.len() == 1 && after[0] != before[0] {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        after.len() == 1 && after[0] != before[0],
        "the frozen replica was not replaced: {before:?} -> {after:?}"
    );
    let mut status = 0;
    for _ in 0..100 {
        let out = s.cli_in(
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
        if out.status.success() {
            status = 200;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, 200, "the endpoint did not recover");
}

#[test]
fn a_standalone_router_takes_a_restarted_servers_routes_at_once() {
    let s = Server::start(&[]);
    let (router, uri, key) = onnx_behind_a_router(&s);
    let ex = seed_dir().join("../onnx");
    let body = std::fs::read_to_string(ex.join("sample-request.json")).unwrap();
    let status = || http_post(&uri, &[("Authorization", &format!("Bearer {key}"))], &body).0;
    assert_eq!(status(), 200);

    // The server dies; a new one starts on the same address (its route versions start
    // again) and moves the endpoint to a new deployment on new ports, removing the old one.
    let api = s.api_url.trim_start_matches("http://").to_string();
    let home = s.kill9();
    let s = Server::start_in(home, &["--api-listen", &api], &[]);
    s.ok_in(
        &ex,
        &[
            "online-deployment",
            "create",
            "-f",
            "deployment.yaml",
            "--name",
            "fresh",
        ],
    );
    s.ok_in(
        &ex,
        &[
            "online-endpoint",
            "update",
            "-n",
            "onnx-endpoint",
            "--traffic",
            "fresh=100",
        ],
    );
    s.ok_in(
        &ex,
        &[
            "online-deployment",
            "delete",
            "-n",
            "native",
            "-e",
            "onnx-endpoint",
        ],
    );
    // Well inside the routers' 30 s long-poll: the new table is taken at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = 0;
    while std::time::Instant::now() < deadline {
        last = status();
        if last == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(last, 200, "the router kept the dead server's routes");
    drop(s);
    drop(router);
}

/// The seed-style ONNX endpoint behind a standalone `berth router`; the router's scoring URI
/// and the endpoint's key.
fn onnx_behind_a_router(s: &Server) -> (Killed, String, String) {
    serve_onnx(s);
    let home = s.home.path().to_string_lossy().into_owned();
    let (router, addr) = start_router(&[("BERTH_HOME", &home)]);
    let key = s.json(&["online-endpoint", "get-credentials", "-n", "onnx-endpoint"])["primaryKey"]
        .as_str()
        .unwrap()
        .to_string();
    (
        router,
        format!("{addr}/api/v1/endpoint/onnx-endpoint/score"),
        key,
    )
}

#[test]
fn killing_the_server_under_load_fails_no_request_through_a_standalone_router() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let s = Server::start(&[]);
    let (router, uri, key) = onnx_behind_a_router(&s);
    let body = std::fs::read_to_string(seed_dir().join("../onnx/sample-request.json")).unwrap();
    let (sent, failed, stop) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicBool::new(false)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (uri, key, body) = (uri.clone(), key.clone(), body.clone());
            let (sent, failed, stop) = (sent.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let auth = format!("Bearer {key}");
                while !stop.load(Ordering::Relaxed) {
                    if http_post(&uri, &[("Authorization", &auth)], &body).0 != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for(&sent, 200);
    let api = s.api_url.trim_start_matches("http://").to_string();
    let home = s.kill9();
    let at_kill = sent.load(Ordering::Relaxed);
    wait_for(&sent, at_kill + 200);
    let s = Server::start_in(home, &["--api-listen", &api], &[]);
    let at_restart = sent.load(Ordering::Relaxed);
    wait_for(&sent, at_restart + 200);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "chaos: {sent} requests, {failed} failed; {} while the server was down",
        at_restart - at_kill
    );
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
    drop(s);
    drop(router);
}
