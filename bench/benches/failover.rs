//! Failover under load: a leader and a standby `berth server` on one PostgreSQL database and
//! one home, a client submitting trivial jobs one after another through the CLI, and the leader
//! killed (`kill -9`) in the middle. Measures how long no job was accepted, and checks that
//! every job the client was told was accepted is in the new leader's store.
//!
//! `cargo build --release`, then `cargo bench -p berth-bench --bench failover` (`ROUNDS=3`).
//! PostgreSQL is a cluster the bench starts (`fsync` on).

#[path = "../../crates/store/tests/support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Submits job `name`; `Ok(true)` accepted, `Ok(false)` its name was taken (an earlier try
/// was accepted but its answer lost), `Err` no server answered.
fn submit(bin: &Path, home: &Path, work: &Path, name: &str) -> Result<bool, String> {
    let out = Command::new(bin)
        .args(["job", "create", "-f", "job.yaml", "--name", name])
        .current_dir(work)
        .env("BERTH_HOME", home)
        .stdout(Stdio::null())
        .output()
        .expect("berth");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(true)
    } else if err.contains("already exists") {
        Ok(false)
    } else {
        Err(err)
    }
}

fn main() {
    let bin = berth_bench::berth_binary();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    postgres::durable();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("round  accepted  failed tries  no job accepted for  lost");
    for round in 1..=rounds {
        let url = rt.block_on(postgres::database());
        let home = tempfile::tempdir().expect("home");
        let work = tempfile::tempdir().expect("work");
        std::fs::write(work.path().join("job.yaml"), "command: \"true\"\n").expect("job");
        let env = [("BERTH_STORE", url.as_str())];
        let mut leader = berth_bench::start_server_with(&bin, home.path(), &env);
        // The standby: same home, same database; it waits for the lease.
        let mut standby = Command::new(&bin)
            .args([
                "server",
                "--api-listen",
                "127.0.0.1:0",
                "--scoring-listen",
                "127.0.0.1:0",
            ])
            .env("BERTH_HOME", home.path())
            .env("BERTH_STORE", &url)
            .env("BERTH_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("standby");
        let stop = AtomicBool::new(false);
        let (accepted, failed, gap) = std::thread::scope(|scope| {
            let client = scope.spawn(|| {
                let (mut accepted, mut failed) = (Vec::new(), 0usize);
                let mut last_ok = Instant::now();
                let mut gap = Duration::ZERO;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("f{round}-{i}");
                    match submit(&bin, home.path(), work.path(), &name) {
                        Ok(_) => {
                            gap = gap.max(last_ok.elapsed());
                            last_ok = Instant::now();
                            accepted.push(name);
                            i += 1;
                        }
                        Err(_) => {
                            failed += 1;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                (accepted, failed, gap)
            });
            std::thread::sleep(Duration::from_secs(3));
            let _ = leader.kill();
            let _ = leader.wait();
            std::thread::sleep(Duration::from_secs(10));
            stop.store(true, Ordering::Relaxed);
            client.join().expect("client")
        });
        let listed = Command::new(&bin)
            .args([
                "job",
                "list",
                "--all-results",
                "-o",
                "tsv",
                "--query",
                "[].name",
            ])
            .env("BERTH_HOME", home.path())
            .output()
            .expect("list");
        let names = String::from_utf8_lossy(&listed.stdout).into_owned();
        let have: std::collections::HashSet<&str> = names.lines().map(str::trim).collect();
        let lost = accepted
            .iter()
            .filter(|n| !have.contains(n.as_str()))
            .count();
        println!(
            "{round:<6} {:>8}  {failed:>12}  {:>15.2} s  {lost:>4}",
            accepted.len(),
            gap.as_secs_f64()
        );
        let _ = standby.kill();
        let _ = standby.wait();
    }
}
