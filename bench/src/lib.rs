//! Shared helpers for Berth's benchmarks: free ports, `wrk` runs and their parsed results.

use std::process::Command;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// What one `wrk --latency` run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Non-2xx or socket errors.
    pub errors: u64,
}

fn to_us(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => f64::NAN,
    }
}

/// Runs `wrk -t1 -c<conns> -d<secs>s --latency` with a POST body and headers.
pub fn wrk(url: &str, conns: u32, secs: u32, body: &str, headers: &[(&str, &str)]) -> WrkResult {
    let script = std::env::temp_dir().join(format!("berth-wrk-{}.lua", std::process::id()));
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    for (k, v) in headers {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    let _ = std::fs::write(&script, lua);
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let errors = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("Non-2xx or 3xx responses:")
                .map(|r| r.trim().parse::<u64>().unwrap_or(0))
        })
        .sum::<u64>()
        + u64::from(text.contains("Socket errors"));
    WrkResult {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_us: field("50%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
        p99_us: field("99%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
        errors,
    }
}

/// The Berth binary the benchmarks run: `$BERTH_BENCH_BIN` (to measure another build side by
/// side, e.g. one made in a worktree), else this checkout's release build.
pub fn berth_binary() -> std::path::PathBuf {
    let bin = std::env::var_os("BERTH_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth")
        });
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release -p berth-cli"
    );
    bin
}

/// `berth server` on port 0 with its home in `home`, returned once it is ready (its output
/// drained from then on).
pub fn start_server(bin: &std::path::Path, home: &std::path::Path) -> std::process::Child {
    start_server_with(bin, home, &[])
}

/// [`start_server`] with extra environment (`BERTH_STORE=postgres://...`).
pub fn start_server_with(
    bin: &std::path::Path,
    home: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::io::BufRead;
    let mut server = Command::new(bin)
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--scoring-listen",
            "127.0.0.1:0",
        ])
        .envs(env.iter().copied())
        .env("BERTH_HOME", home)
        .env("BERTH_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    let stderr = server.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.expect("line").starts_with("berth server ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    server
}

/// Serves `router` on `127.0.0.1:port` as the server's scoring listener does
/// (`listen::serve_scoring`), on a thread of its own with [`router_runtime`].
pub fn serve_router(router: std::sync::Arc<berth_router::InferenceRouter>, port: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        router_runtime().block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = std::sync::Arc::clone(&router).app();
            berth_router::listen::serve_scoring(
                l,
                router,
                app,
                None,
                berth_router::listen::Limits::with_max_connections(1000),
                std::future::pending(),
            )
            .await
        })
    });
}

/// The runtime an in-process router runs on: one worker of a multi-thread runtime, as nginx
/// has one worker, or a current-thread one with `ROUTER_RT=current`.
pub fn router_runtime() -> tokio::runtime::Runtime {
    let rt = if std::env::var("ROUTER_RT").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
    };
    rt.expect("runtime")
}

/// Stops the nginx started with `-c conf -p prefix`.
pub fn stop_nginx(conf: &std::path::Path, prefix: &std::path::Path) {
    let _ = Command::new("nginx")
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(prefix)
        .args(["-s", "stop"])
        .status();
}
