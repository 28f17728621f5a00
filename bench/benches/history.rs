//! A control plane with a long history: the server's start-up time, idle memory, `job list
//! --max-results 50` and a `/metrics` scrape with N finished jobs in its store (default
//! 1,000,000), beside the same server empty; and the store's bytes per job.
//!
//! `cargo build --release`, then `cargo bench -p berth-bench --bench history` (`N=100000` for
//! a quicker run). The jobs are inserted by the bench in one transaction per 10,000 (copies of
//! a real job's record, each its own name), not submitted one by one; they have no folders and
//! no MLflow runs. The disk needs about 2.5 KB a job. `STORE=postgres` runs the same on
//! PostgreSQL (a cluster the bench starts, as the tests do, `fsync` on).

#[path = "../../crates/store/tests/support/postgres.rs"]
mod postgres;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_store::{Kind, Store};
use serde_json::Value;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn api_addr(home: &Path) -> String {
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("server.json")).expect("info"))
            .expect("json");
    info["api_url"]
        .as_str()
        .expect("api_url")
        .trim_start_matches("http://")
        .to_string()
}

/// ms to GET `/metrics` (the whole answer read).
fn scrape(addr: &str) -> f64 {
    let t0 = Instant::now();
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    assert!(out.contains("berth_jobs"), "{out}");
    t0.elapsed().as_secs_f64() * 1e3
}

/// ms for `berth job list --max-results 50`, 30 times.
fn list_times(bin: &Path, home: &Path) -> Vec<f64> {
    (0..30)
        .map(|_| {
            let t0 = Instant::now();
            let ok = Command::new(bin)
                .args(["job", "list", "--max-results", "50", "-o", "tsv"])
                .env("BERTH_HOME", home)
                .stdout(Stdio::null())
                .status()
                .expect("list")
                .success();
            assert!(ok);
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

struct Measured {
    start_ms: f64,
    rss_mib: f64,
    list: (f64, f64),
    metrics: (f64, f64),
}

fn measure(bin: &Path, home: &Path, env: &[(&str, &str)]) -> (Measured, Child) {
    let t0 = Instant::now();
    let server = berth_bench::start_server_with(bin, home, env);
    let start_ms = t0.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_secs(3));
    let rss_mib = rss_kib(server.id()) as f64 / 1024.0;
    let list = percentiles(list_times(bin, home));
    let addr = api_addr(home);
    let metrics = percentiles((0..30).map(|_| scrape(&addr)).collect());
    (
        Measured {
            start_ms,
            rss_mib,
            list,
            metrics,
        },
        server,
    )
}

fn stop(mut server: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let bin = berth_bench::berth_binary();
    let home_dir = tempfile::tempdir().expect("home");
    let home = home_dir.path();
    let work = tempfile::tempdir().expect("work");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = (std::env::var("STORE").as_deref() == Ok("postgres")).then(|| {
        postgres::durable();
        rt.block_on(postgres::database())
    });
    let env: Vec<(&str, &str)> = url.iter().map(|u| ("BERTH_STORE", u.as_str())).collect();

    // The empty server, with one real job whose record the history copies.
    let (empty, server) = measure(&bin, home, &env);
    std::fs::write(
        work.path().join("job.yml"),
        "command: echo hi\nname: template\n",
    )
    .expect("job");
    let ok = Command::new(&bin)
        .args(["job", "create", "-f", "job.yml", "--stream"])
        .current_dir(work.path())
        .env("BERTH_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("create")
        .success();
    assert!(ok);
    stop(server);

    let db = home.join("berth.db");
    let t0 = Instant::now();
    rt.block_on(async {
        let store = match &url {
            Some(u) => Store::connect(u).await.expect("store"),
            None => Store::open(&db).await.expect("store"),
        };
        let template: Value = store
            .get::<Value>(Kind::Job, "template")
            .await
            .expect("read")
            .expect("template")
            .value;
        let workdir = template["workdir"].as_str().unwrap_or_default().to_string();
        for chunk in 0..n.div_ceil(10_000) {
            let items: Vec<(String, Option<String>, Value)> = (chunk * 10_000
                ..((chunk + 1) * 10_000).min(n))
                .map(|i| {
                    let name = format!("hist_{i:07}");
                    let mut v = template.clone();
                    v["name"] = Value::String(name.clone());
                    v["display_name"] = Value::String(name.clone());
                    v["workdir"] = Value::String(workdir.replace("template", &name));
                    (name, Some("Completed".to_string()), v)
                })
                .collect();
            store.insert_many(Kind::Job, &items).await.expect("insert");
        }
    });
    let insert_s = t0.elapsed().as_secs_f64();
    let bytes: u64 = match &url {
        Some(u) => rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(u).await.expect("connect");
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut c)
                .await
                .expect("size");
            size as u64
        }),
        None => ["berth.db", "berth.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(home.join(f)).ok())
            .map(|m| m.len())
            .sum(),
    };

    let (full, server) = measure(&bin, home, &env);
    stop(server);
    println!(
        "store: {}",
        if url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{n} finished jobs inserted in {insert_s:.1} s; store {:.1} MB, {:.0} bytes a job",
        bytes as f64 / 1e6,
        bytes as f64 / n as f64
    );
    for (what, m) in [("empty", &empty), ("with history", &full)] {
        println!(
            "{what:<13} start-up {:>7.1} ms  idle RSS {:>6.1} MiB  job list -r 50 p50 {:>6.1} ms p99 {:>6.1} ms  /metrics p50 {:>6.2} ms p99 {:>6.2} ms",
            m.start_ms, m.rss_mib, m.list.0, m.list.1, m.metrics.0, m.metrics.1
        );
    }
}
