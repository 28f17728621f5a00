//! Router added latency and throughput against a trivial backend, beside nginx `proxy_pass`
//! in front of the same backend, in the same run.
//!
//! Needs `nginx` and `wrk` (`apt-get install nginx-light wrk`). Backend: nginx answering
//! `return 200` on /score. Measures: wrk straight to the backend; through nginx proxy_pass
//! (keep-alive upstream); through Berth's router (key auth, traffic split, slot accounting on).
//! 1 connection for latency, 32 for throughput (wrk -t1).

use std::collections::HashMap;
use std::process::Command;

use berth_bench::{free_port, wrk};
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use berth_router::{DeploymentRoute, EndpointRoute, InferenceRouter, RouteAuth};

/// nginx with one worker: a trivial backend on `backend` and `proxy_pass` to it on `proxy`.
fn start_nginx(dir: &tempfile::TempDir, backend: u16, proxy: u16) {
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n upstream be {{ server 127.0.0.1:{backend}; keepalive 64; }}\n server {{ listen 127.0.0.1:{backend}; location / {{ return 200 '{{\"ok\":1}}'; }} }}\n server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("conf");
    let status = Command::new("nginx")
        .args(["-c"])
        .arg(dir.path().join("nginx.conf"))
        .args(["-p"])
        .arg(dir.path())
        .status()
        .expect("nginx (apt-get install nginx-light)");
    assert!(status.success());
}

/// Berth's router on `router_port` in front of the backend, on a thread of its own.
fn start_router(backend: u16, router_port: u16) {
    let router = InferenceRouter::new();
    let settings = RequestSettings {
        request_timeout_ms: 5000,
        max_concurrent_requests_per_instance: 64,
        max_queue_wait_ms: 500,
    };
    let ep = EndpointRoute {
        mirror: None,
        auth: RouteAuth::Keys(vec!["benchkey".into(), "other".into()]),
        traffic: TrafficSplit::parse_cli("blue=90 green=10").expect("split"),
        deployments: HashMap::from([
            (
                "blue".to_string(),
                DeploymentRoute::new(vec![format!("127.0.0.1:{backend}")], settings),
            ),
            (
                "green".to_string(),
                DeploymentRoute::new(vec![format!("127.0.0.1:{backend}")], settings),
            ),
        ]),
    };
    router.update(HashMap::from([("ep".to_string(), ep)]));
    // The router on its own thread (`berth_bench::router_runtime`).
    berth_bench::serve_router(router, router_port);
}

fn main() {
    let dir = tempfile::tempdir().expect("tmp");
    let (backend, proxy, router_port) = (free_port(), free_port(), free_port());
    start_nginx(&dir, backend, proxy);
    start_router(backend, router_port);
    std::thread::sleep(std::time::Duration::from_millis(200));

    let body = r#"{"data": [[1, 2]]}"#;
    let auth = [("Authorization", "Bearer benchkey")];
    let targets = [
        (
            "backend alone",
            format!("http://127.0.0.1:{backend}/score"),
            &[][..],
        ),
        (
            "nginx proxy_pass",
            format!("http://127.0.0.1:{proxy}/score"),
            &[][..],
        ),
        (
            "berth router",
            format!("http://127.0.0.1:{router_port}/api/v1/endpoint/ep/score"),
            &auth[..],
        ),
    ];
    let _ = wrk(&targets[2].1, 4, 2, body, targets[2].2); // warm up
    println!(
        "{:<18} {:>10} {:>10} {:>12} {:>8}",
        "target", "p50 µs", "p99 µs", "rps (32c)", "errors"
    );
    for (name, url, headers) in &targets {
        let one = wrk(url, 1, 8, body, headers);
        let many = wrk(url, 32, 8, body, headers);
        println!(
            "{name:<18} {:>10.1} {:>10.1} {:>12.0} {:>8}",
            one.p50_us,
            one.p99_us,
            many.rps,
            one.errors + many.errors
        );
    }
    berth_bench::stop_nginx(&dir.path().join("nginx.conf"), dir.path());
}
