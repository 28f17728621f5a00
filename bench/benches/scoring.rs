//! score.py serving: `berth runtime` beside Microsoft's `azureml-inference-server-http`
//! (`azmlinfsrv`) serving the same trivial pure-Python script, 8 connections, same run.
//!
//! Needs `cargo build --release`, `wrk`, and the peer in a venv:
//! `python3 -m venv /tmp/azvenv && /tmp/azvenv/bin/pip install azureml-inference-server-http`
//! (or set AZMLINFSRV to its path).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::{free_port, wrk};

const SCRIPT: &str = "import json\n\ndef init():\n    pass\n\ndef run(raw_data):\n    data = json.loads(raw_data)\n    return {\"sum\": sum(data[\"data\"][0])}\n";

fn wait_http(port: u16, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the server exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server on {port} not up");
}

fn rss_mib(pid: u32) -> f64 {
    // The process and its children (workers).
    let out = Command::new("ps")
        .args([
            "-o",
            "rss=",
            "--ppid",
            &pid.to_string(),
            "-p",
            &pid.to_string(),
        ])
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|v| v.parse::<f64>().ok())
            .sum::<f64>()
            / 1024.0
    })
    .unwrap_or(0.0)
}

fn bench(name: &str, mut child: Child, port: u16, ready_path: &str) {
    bench_body(
        name,
        &mut child,
        port,
        ready_path,
        r#"{"data": [[1, 2, 3]]}"#,
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn bench_body(name: &str, child: &mut Child, port: u16, ready_path: &str, body: &str) {
    wait_http(port, child);
    let url = format!("http://127.0.0.1:{port}/score");
    // Readiness (workers initialised) before measuring.
    let start = Instant::now();
    while wrk(
        &format!("http://127.0.0.1:{port}{ready_path}"),
        1,
        1,
        body,
        &[],
    )
    .rps == 0.0
        && start.elapsed() < Duration::from_secs(30)
    {}
    let warm = wrk(&url, 8, 2, body, &[]);
    let r = wrk(&url, 8, 10, body, &[]);
    if std::env::var("BENCH_DEBUG").is_ok() {
        eprintln!("warm-up {warm:?}");
    }
    println!(
        "{name:<34} {:>10.0} {:>10.2} {:>10.2} {:>9.1} {:>7}",
        r.rps,
        r.p50_us / 1e3,
        r.p99_us / 1e3,
        rss_mib(child.id()),
        r.errors
    );
}

const ORT_SCRIPT: &str = "import json, os\nimport numpy as np\nimport onnxruntime as ort\n\ndef init():\n    global sess\n    sess = ort.InferenceSession(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'model.onnx'), providers=['CPUExecutionProvider'])\n\ndef run(raw_data):\n    x = np.array(json.loads(raw_data)['data'], dtype=np.float32)\n    (y,) = sess.run(None, {'x': x})\n    return {'y': y.tolist()}\n";

/// Starts azmlinfsrv on `port` with its own temporary HOME (it writes there); keep the
/// returned folder alive as long as the server runs.
fn spawn_peer(
    peer: &Path,
    script: &Path,
    model_dir: &Path,
    cwd: &Path,
    port: u16,
    workers: u32,
) -> (Child, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("home");
    let child = Command::new(peer)
        .arg("--entry_script")
        .arg(script)
        .args([
            "--port",
            &port.to_string(),
            "--worker_count",
            &workers.to_string(),
        ])
        .env("HOME", home.path())
        .env("AZUREML_MODEL_DIR", model_dir)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azmlinfsrv");
    (child, home)
}

/// Native ONNX in `berth runtime` beside azmlinfsrv running the same model with onnxruntime.
fn onnx(berth: &Path, peer: &str, dir: &Path) {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/onnx/model");
    let body = std::fs::read_to_string(model.join("../sample-request.json")).expect("request");
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "ONNX MLP, 3 rows (8 conns, 10 s)", "req/s", "p50 ms", "p99 ms", "RSS MiB", "errors"
    );
    let port = free_port();
    let mut child = Command::new(berth)
        .args(["runtime", "--model-dir"])
        .arg(&model)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("berth runtime");
    bench_body(
        "berth runtime, native (tract)",
        &mut child,
        port,
        "/ready",
        &body,
    );
    let _ = child.kill();
    let _ = child.wait();
    if !Path::new(peer).exists() {
        return;
    }
    let script = dir.join("score_ort.py");
    std::fs::write(&script, ORT_SCRIPT).expect("script");
    for workers in [1, 2] {
        let port = free_port();
        let (mut child, _home) = spawn_peer(Path::new(peer), &script, &model, dir, port, workers);
        bench_body(
            &format!("azmlinfsrv + onnxruntime, {workers} w"),
            &mut child,
            port,
            "/",
            &body,
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build first: cargo build --release");
    let peer = std::env::var("AZMLINFSRV").unwrap_or_else(|_| "/tmp/azvenv/bin/azmlinfsrv".into());
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("score.py");
    std::fs::write(&script, SCRIPT).expect("script");
    std::fs::create_dir_all(dir.path().join("model")).expect("model");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "server (8 connections, 10 s)", "req/s", "p50 ms", "p99 ms", "RSS MiB", "errors"
    );
    for workers in [1, 2] {
        let port = free_port();
        let child = Command::new(&berth)
            .args(["runtime", "--script"])
            .arg(&script)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                &workers.to_string(),
            ])
            .spawn()
            .expect("berth runtime");
        bench(
            &format!("berth runtime, {workers} worker(s)"),
            child,
            port,
            "/ready",
        );
    }
    if !Path::new(&peer).exists() {
        println!("(azmlinfsrv not found at {peer}; skipping the peer)");
        onnx(&berth, &peer, dir.path());
        return;
    }
    for workers in [1, 2] {
        let port = free_port();
        let (child, _home) = spawn_peer(
            Path::new(&peer),
            &script,
            &dir.path().join("model"),
            dir.path(),
            port,
            workers,
        );
        bench(
            &format!("azmlinfsrv 1.x, {workers} worker(s)"),
            child,
            port,
            "/",
        );
    }
    onnx(&berth, &peer, dir.path());
}
