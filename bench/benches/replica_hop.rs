//! The hop in front of a replica: the same `berth runtime` replica and trivial score.py (one
//! Python worker, on its Unix socket as `berth server` starts it) reached through Berth's
//! router and through nginx `proxy_pass` to the same socket (keep-alive upstream), side by side
//! in each round; and, for reference, a second replica of the same script on TCP hit directly.
//!
//! Needs a release build, `nginx` and `wrk`: `cargo build --release -p berth-cli`, then
//! `cargo bench -p berth-bench --bench replica_hop` (`ROUNDS=5`, `SECS=8`). One connection:
//! this measures latency, not throughput (one worker answers one request at a time).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::{free_port, wrk};
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use berth_router::{DeploymentRoute, EndpointRoute, InferenceRouter, RouteAuth};

const SCRIPT: &str = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'sum': sum(json.loads(raw)['data'][0])}\n";

/// A replica process, killed when dropped (a failed run leaves none behind).
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a replica listening on `listen`; returns it once it is ready.
fn replica(berth: &Path, dir: &Path, listen: &str, name: &str) -> Replica {
    let ready = dir.join(format!("{name}.ready"));
    let child = Command::new(berth)
        .args(["runtime", "--script"])
        .arg(dir.join("score.py"))
        .args(["--listen", listen, "--workers", "1", "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth runtime");
    let child = Replica(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the replica was not ready in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// nginx with one worker (as the socket's user), proxying `proxy` to the socket; returns its config file.
fn nginx(dir: &Path, socket: &Path, proxy: u16) -> PathBuf {
    let conf = format!(
        "user {user};\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n upstream replica {{ server unix:{s}; keepalive 16; }}\n server {{ listen 127.0.0.1:{proxy}; location / {{ proxy_pass http://replica; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
        d = dir.display(),
        s = socket.display(),
        // nginx's workers drop to `nobody` by default, who may not open the 0600 socket.
        user = std::env::var("USER").unwrap_or_else(|_| "root".into()),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("conf");
    let status = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .status()
        .expect("nginx (apt-get install nginx-light)");
    assert!(status.success());
    path
}

/// Berth's router in front of the socket, on its own one-worker runtime as nginx has one
/// worker (`ROUTER_RT=current` for a current-thread one), served by the same listener code as
/// `berth server` and `berth router`.
fn router(socket: &Path, port: u16) {
    let router = InferenceRouter::new();
    let settings = RequestSettings {
        request_timeout_ms: 5000,
        max_concurrent_requests_per_instance: 1,
        max_queue_wait_ms: 500,
    };
    let addr = format!("unix:{}", socket.display());
    let ep = EndpointRoute {
        mirror: None,
        auth: RouteAuth::Keys(vec!["benchkey".into()]),
        traffic: TrafficSplit::parse_cli("blue=100").expect("split"),
        deployments: HashMap::from([(
            "blue".to_string(),
            DeploymentRoute::new(vec![addr], settings),
        )]),
    };
    router.update(HashMap::from([("ep".to_string(), ep)]));
    berth_bench::serve_router(router, port);
}

fn main() {
    let berth = berth_bench::berth_binary();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs: u32 = std::env::var("SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("score.py"), SCRIPT).expect("script");
    let socket = dir.path().join("replica.sock");
    let direct_port = free_port();
    let _on_socket = replica(
        &berth,
        dir.path(),
        &format!("unix:{}", socket.display()),
        "unix",
    );
    let _on_tcp = replica(
        &berth,
        dir.path(),
        &format!("127.0.0.1:{direct_port}"),
        "tcp",
    );
    let (proxy, router_port) = (free_port(), free_port());
    let conf = nginx(dir.path(), &socket, proxy);
    router(&socket, router_port);
    let body = r#"{"data": [[1, 2, 3]]}"#;
    let auth = [("Authorization", "Bearer benchkey")];
    let targets = [
        (
            "replica on TCP, direct",
            format!("http://127.0.0.1:{direct_port}/score"),
            &[][..],
        ),
        (
            "nginx -> socket",
            format!("http://127.0.0.1:{proxy}/score"),
            &[][..],
        ),
        (
            "berth router -> socket",
            format!("http://127.0.0.1:{router_port}/api/v1/endpoint/ep/score"),
            &auth[..],
        ),
    ];
    for (_, url, headers) in &targets {
        let _ = wrk(url, 1, 2, body, headers); // warm up
    }
    println!("1 connection, {secs} s per target, targets interleaved in each round");
    println!(
        "{:<6} {:<24} {:>9} {:>9} {:>9} {:>7}",
        "round", "target", "p50 µs", "p99 µs", "req/s", "errors"
    );
    for round in 1..=rounds {
        for (name, url, headers) in &targets {
            let r = wrk(url, 1, secs, body, headers);
            println!(
                "{round:<6} {name:<24} {:>9.1} {:>9.1} {:>9.0} {:>7}",
                r.p50_us, r.p99_us, r.rps, r.errors
            );
        }
    }
    let _ = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir.path())
        .args(["-s", "stop"])
        .status();
}
