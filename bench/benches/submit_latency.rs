//! Submit → Running latency of a trivial job on the local compute, beside spawning the same
//! command with `sh -c`.
//!
//! Needs a release build of the binary: `cargo build --release`, then
//! `cargo bench -p berth-bench --bench submit_latency`. Starts `berth server` on port 0 with a
//! temporary home, submits N jobs one after another whose command writes the wall-clock time
//! it started (`date +%s%N`), and compares that with the time just before the submit. The
//! baseline spawns `sh -c 'date +%s%N > file'` the same way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const N: usize = 200;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn read_ns(p: &Path) -> u128 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let bin = berth_bench::berth_binary();
    let home = tempfile::tempdir().expect("home");
    // Outside the home: a job may not write into the server's home (its sandbox).
    let work_dir = tempfile::tempdir().expect("work");
    let work = work_dir.path().to_path_buf();

    let baseline = baseline(&work);
    let berth = berth_latencies(&bin, home.path(), &work);
    let (bp50, bp99) = percentiles(baseline);
    let (p50, p99) = percentiles(berth);
    println!(
        "N={N} sequential trivial jobs; times from just before the request to the command's first instruction"
    );
    println!("sh -c spawn         p50 {bp50:.2} ms  p99 {bp99:.2} ms");
    println!(
        "berth job create    p50 {p50:.2} ms  p99 {p99:.2} ms  (includes the CLI process, HTTP, durable insert, admission, supervisor spawn)"
    );
    println!(
        "extra over sh -c    p50 {:.2} ms  p99 {:.2} ms",
        p50 - bp50,
        p99 - bp99
    );
}

/// `sh -c 'date +%s%N > file'` N times: ms from just before the spawn to the command's start.
fn baseline(work: &Path) -> Vec<f64> {
    let mut baseline = Vec::new();
    for i in 0..N {
        let f = work.join(format!("sh-{i}"));
        let t0 = now_ns();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("date +%s%N > {}", f.display()))
            .status()
            .expect("sh");
        assert!(status.success());
        baseline.push((read_ns(&f) - t0) as f64 / 1e6);
    }
    baseline
}

/// `berth job create --stream` of a trivial job N times against a server in `home`: ms from
/// just before the CLI starts to the command's start.
fn berth_latencies(bin: &Path, home: &Path, work: &Path) -> Vec<f64> {
    let mut server = berth_bench::start_server(bin, home);
    let stamp = work.join("stamp");
    std::fs::write(
        work.join("job.yaml"),
        format!("command: date +%s%N > {}\n", stamp.display()),
    )
    .expect("job");
    let mut berth = Vec::new();
    for i in 0..N {
        let _ = std::fs::remove_file(&stamp);
        let name = format!("j{i}");
        let t0 = now_ns();
        let out = Command::new(bin)
            .args([
                "job", "create", "-f", "job.yaml", "--name", &name, "--stream",
            ])
            .current_dir(work)
            .env("BERTH_HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("create");
        assert!(out.success());
        berth.push((read_ns(&stamp) - t0) as f64 / 1e6);
    }
    let _ = server.kill();
    let _ = server.wait();
    berth
}
