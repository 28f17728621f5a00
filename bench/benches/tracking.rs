//! The MLflow tracking API: log-batch of 1,000 metrics (round trip and points per second) and
//! reading back a 100k-point history, against Berth's server and a local `mlflow server`
//! (SQLite backend) in the same run, driven by the same stdlib-only Python client
//! (`bench/tracking_driver.py`). Then what a million points cost Berth's store on disk.
//!
//! `cargo build --release -p berth-cli`, a Python with mlflow in `MLFLOW_PYTHON` (for example
//! `uv venv /tmp/mlb && uv pip install --python /tmp/mlb mlflow`, then
//! `MLFLOW_PYTHON=/tmp/mlb/bin/python`), then `cargo bench -p berth-bench --bench tracking`.

use std::path::Path;
use std::process::{Command, Stdio};

const ROUNDS: &str = "200";
const HISTORY: &str = "100000";

fn driver(python: &str, url: &str, token: &str, rounds: &str, history: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tracking_driver.py");
    let out = Command::new(python)
        .arg(script)
        .args([url, token, rounds, history])
        .stderr(Stdio::inherit())
        .output()
        .expect("python");
    assert!(out.status.success(), "the driver failed");
    serde_json::from_slice(&out.stdout).expect("driver output")
}

fn show(name: &str, v: &serde_json::Value) {
    println!(
        "{name:<22} log-batch(1000) p50 {:>7.2} ms  p99 {:>7.2} ms  {:>9.0} points/s  history of {} read in {:.3} s",
        v["batch_p50_ms"].as_f64().unwrap_or_default(),
        v["batch_p99_ms"].as_f64().unwrap_or_default(),
        v["points_per_s"].as_f64().unwrap_or_default(),
        v["history_points"],
        v["history_read_s"].as_f64().unwrap_or_default(),
    );
}

fn mlflow_server(python: &str, dir: &Path) -> (std::process::Child, String) {
    let port = berth_bench::free_port();
    let db = format!("sqlite:///{}", dir.join("mlflow.db").display());
    let mut child = Command::new(python)
        .args([
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            &db,
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--workers", "1"])
        .args([
            "--default-artifact-root",
            &dir.join("artifacts").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mlflow server");
    let url = format!("http://127.0.0.1:{port}");
    // Ready once /health answers: the port opens before the app has loaded.
    for _ in 0..1200 {
        if healthy(port) {
            return (child, url);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mlflow server did not start on {url}");
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut out = String::new();
    c.write_all(req.as_bytes()).is_ok()
        && c.read_to_string(&mut out).is_ok()
        && out.starts_with("HTTP/1.1 200")
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes of the store's files (database and write-ahead log).
fn store_bytes(home: &Path) -> u64 {
    ["berth.db", "berth.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(home.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let python = std::env::var("MLFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let bin = berth_bench::berth_binary();
    let home = tempfile::tempdir().expect("home");
    let mut berth = berth_bench::start_server(&bin, home.path());
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("server.json")).expect("server.json"),
    )
    .expect("json");
    let url = info["api_url"].as_str().expect("api_url").to_string();
    let token = std::fs::read_to_string(home.path().join("token")).expect("token");

    println!("{ROUNDS} sequential log-batch calls of 1,000 points each, one keep-alive connection");
    // One server at a time: the other's start-up would take the CPU from the one measured.
    let b = driver(&python, &url, token.trim(), ROUNDS, HISTORY);
    let mdir = tempfile::tempdir().expect("mlflow dir");
    let (mut mlflow, murl) = mlflow_server(&python, mdir.path());
    let m = driver(&python, &murl, "", ROUNDS, HISTORY);
    show("berth server", &b);
    show("mlflow server (SQLite)", &m);
    let ratio =
        b["points_per_s"].as_f64().unwrap_or_default() / m["points_per_s"].as_f64().unwrap_or(1.0);
    println!("throughput ratio berth/mlflow: {ratio:.1}x");
    let _ = mlflow.kill();
    let _ = mlflow.wait();

    let (before, rss_before) = (store_bytes(home.path()), rss_kib(berth.id()));
    driver(&python, &url, token.trim(), "1000", "1000");
    let (after, rss_after) = (store_bytes(home.path()), rss_kib(berth.id()));
    println!(
        "berth store: {:.1} MB more on disk for 1,001,000 more points ({:.0} bytes a point); server RSS {:.1} -> {:.1} MiB",
        (after - before) as f64 / 1e6,
        (after - before) as f64 / 1_001_000.0,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
    );
    let _ = berth.kill();
    let _ = berth.wait();
}
