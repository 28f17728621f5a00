//! Soak: jobs and scoring together at 80% of the scoring capacity for `SOAK_MINUTES` (10 by
//! default), printing each minute the server's RSS and open file descriptors, the scoring p99
//! of that minute, and the counts. Memory and descriptors should stay flat.
//!
//! Needs a release build: `cargo build --release`, then
//! `cargo bench -p berth-bench --bench soak` (`SOAK_MINUTES=1` for a short run).
//!
//! The endpoint is the ONNX example (served natively, no Python), so the scoring side measures
//! Berth and not a Python interpreter. Capacity is what 4 closed-loop keep-alive clients get
//! in 5 s; the soak paces the same 4 clients to 80% of it. Beside them, a trivial job is
//! submitted every 2 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;

/// One keep-alive HTTP/1.1 connection that POSTs the same request again and again.
struct Conn {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Conn {
    fn open(addr: &str, path: &str, key: &str, body: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        let _ = stream.set_nodelay(true);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Conn {
            stream: BufReader::new(stream),
            request,
        }
    }

    /// One request; its status.
    fn call(&mut self) -> std::io::Result<u16> {
        self.stream.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.stream.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok(status)
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn berth(bin: &Path, home: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("BERTH_HOME", home)
        .output()
        .expect("berth");
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The scoring target: where to POST, with which key and body.
#[derive(Clone)]
struct Target {
    addr: String,
    path: String,
    key: String,
    body: String,
}

impl Target {
    fn open(&self) -> Conn {
        Conn::open(&self.addr, &self.path, &self.key, &self.body)
    }
}

/// Deploys the ONNX example; its scoring target.
fn deploy_onnx(bin: &Path, home: &Path) -> Target {
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/onnx");
    let run = |args: &[&str]| berth(bin, home, &ex, args);
    run(&["online-endpoint", "create", "-f", "endpoint.yaml"]);
    run(&[
        "online-deployment",
        "create",
        "-f",
        "deployment.yaml",
        "--all-traffic",
    ]);
    let json =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&run(args)).expect("json") };
    let show = json(&[
        "online-endpoint",
        "show",
        "-n",
        "onnx-endpoint",
        "-o",
        "json",
    ]);
    let creds = json(&[
        "online-endpoint",
        "get-credentials",
        "-n",
        "onnx-endpoint",
        "-o",
        "json",
    ]);
    let uri = show["scoring_uri"].as_str().expect("uri");
    let (addr, path) = uri
        .trim_start_matches("http://")
        .split_once('/')
        .expect("path");
    Target {
        addr: addr.to_string(),
        path: format!("/{path}"),
        key: creds["primaryKey"].as_str().expect("key").to_string(),
        body: std::fs::read_to_string(ex.join("sample-request.json")).expect("body"),
    }
}

/// Requests per second `CLIENTS` closed-loop connections get in 5 s.
fn capacity(target: &Target) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (target, done, stop) = (target.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = target.open();
                while !stop.load(Ordering::Relaxed) {
                    if c.call().is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        let _ = p.join();
    }
    done.load(Ordering::Relaxed) as f64 / 5.0
}

/// What the paced clients count.
#[derive(Clone, Default)]
struct Counts {
    latencies: Arc<Mutex<Vec<f64>>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    jobs: Arc<AtomicU64>,
}

/// One client paced to one request per `interval` until `stop`.
fn paced_client(
    target: Target,
    interval: Duration,
    counts: Counts,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = target.open();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            match c.call() {
                Ok(200) => {}
                Ok(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    c = target.open();
                }
            }
            counts.sent.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = counts.latencies.lock() {
                l.push(t.elapsed().as_secs_f64() * 1e6);
            }
            next += interval;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// Submits a trivial job every 2 s until `stop`.
fn job_submitter(
    bin: &Path,
    home: &Path,
    work: &Path,
    counts: Counts,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::fs::write(work.join("job.yaml"), "command: echo soak\n").expect("job");
    let (bin, home, work) = (bin.to_path_buf(), home.to_path_buf(), work.to_path_buf());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            berth(&bin, &home, &work, &["job", "create", "-f", "job.yaml"]);
            counts.jobs.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(2));
        }
    })
}

/// Prints the minutely table for `minutes`.
fn report(pid: u32, minutes: u64, counts: &Counts) {
    println!("minute  rss_mib  fds  p50_us  p99_us  requests  failed  jobs");
    println!(
        "0       {:>7.1}  {:>3}  {:>6}  {:>6}  {:>8}  {:>6}  {:>4}",
        rss_mib(pid),
        open_fds(pid),
        "-",
        "-",
        0,
        0,
        0
    );
    for minute in 1..=minutes {
        std::thread::sleep(Duration::from_secs(60));
        let mut l = std::mem::take(&mut *counts.latencies.lock().expect("latencies"));
        println!(
            "{minute:<6}  {:>7.1}  {:>3}  {:>6.0}  {:>6.0}  {:>8}  {:>6}  {:>4}",
            rss_mib(pid),
            open_fds(pid),
            percentile(&mut l, 0.5),
            percentile(&mut l, 0.99),
            counts.sent.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            counts.jobs.load(Ordering::Relaxed),
        );
    }
}

/// Kills the replicas the server left running (they outlive it by design).
fn kill_replicas(home: &Path) {
    for pid_file in std::fs::read_dir(home.join("deployments/onnx-endpoint/native"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|rev| {
            std::fs::read_dir(rev.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|f| f.file_name().to_string_lossy().ends_with(".pid"))
    {
        if let Ok(p) = std::fs::read_to_string(pid_file.path()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", p.trim())])
                .status();
        }
    }
}

fn main() {
    let bin = berth_bench::berth_binary();
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    let mut server = berth_bench::start_server(&bin, home.path());
    let target = deploy_onnx(&bin, home.path());
    let capacity = capacity(&target);
    let rate = capacity * 0.8;
    println!(
        "capacity {capacity:.0} req/s with {CLIENTS} clients; soaking at {rate:.0} req/s for {minutes} min, a job every 2 s"
    );
    let counts = Counts::default();
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(CLIENTS as f64 / rate);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| paced_client(target.clone(), interval, counts.clone(), stop.clone()))
        .collect();
    let submitter = job_submitter(&bin, home.path(), work.path(), counts.clone(), stop.clone());
    report(server.id(), minutes, &counts);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let _ = submitter.join();
    let list = berth(
        &bin,
        home.path(),
        work.path(),
        &["job", "list", "-o", "json"],
    );
    let listed: serde_json::Value = serde_json::from_str(&list).expect("json");
    let completed = listed.as_array().map_or(0, |a| {
        a.iter().filter(|j| j["status"] == "Completed").count()
    });
    println!(
        "jobs: {} submitted, {completed} completed",
        counts.jobs.load(Ordering::Relaxed)
    );
    let _ = server.kill();
    let _ = server.wait();
    kill_replicas(home.path());
}
