//! Jobs accepted per second on SQLite and on PostgreSQL, side by side in one run: a release
//! `berth server` on each store in turn, six CLI clients at once each submitting trivial jobs
//! (`berth job create -f job.yaml --name ...`, as a team would), timed from the first submit
//! to the last acceptance. The jobs then run on the local compute, as they would.
//!
//! `cargo build --release`, then `cargo bench -p berth-bench --bench store_throughput`
//! (`N=600` jobs per store by default; `ROUNDS=2`). PostgreSQL is a cluster the bench starts
//! (Debian's `postgresql` package, as for the tests), `fsync` on, on this machine's disk.

#[path = "../../crates/store/tests/support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const CLIENTS: usize = 6;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Submits `n` jobs from `CLIENTS` threads against the server in `home`; returns jobs/s.
fn accept(bin: &Path, home: &Path, work: &Path, n: usize, tag: &str) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            scope.spawn(move || {
                for i in (c..n).step_by(CLIENTS) {
                    let name = format!("{tag}-{i}");
                    let status = Command::new(bin)
                        .args(["job", "create", "-f", "job.yaml", "--name", &name])
                        .current_dir(work)
                        .env("BERTH_HOME", home)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("berth job create");
                    assert!(status.success(), "job {name} was refused");
                }
            });
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let bin = berth_bench::berth_binary();
    let n = env_or("N", 600);
    let rounds = env_or("ROUNDS", 2);
    let work = tempfile::tempdir().expect("work");
    std::fs::write(work.path().join("job.yaml"), "command: \"true\"\n").expect("job");
    postgres::durable();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("{n} trivial jobs per store, {CLIENTS} CLI clients at once");
    println!("round  store        jobs/s");
    for round in 1..=rounds {
        for store in ["sqlite", "postgres"] {
            let home = tempfile::tempdir().expect("home");
            let url = (store == "postgres").then(|| rt.block_on(postgres::database()));
            let env: Vec<(&str, &str)> = url.iter().map(|u| ("BERTH_STORE", u.as_str())).collect();
            let mut server = berth_bench::start_server_with(&bin, home.path(), &env);
            let rate = accept(&bin, home.path(), work.path(), n, &format!("r{round}"));
            println!("{round:<6} {store:<12} {rate:>7.1}");
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
