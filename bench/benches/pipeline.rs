//! Pipeline step overhead on the local compute: a 50-step chain and a 50-wide fan-out, beside
//! running the same commands one after another with `sh -c`; and a sweep's overhead per
//! trial: 50 grid trials one at a time, from a trial's end to the next one's start.
//!
//! Needs a release build: `cargo build --release`, then
//! `cargo bench -p berth-bench --bench pipeline`. Each step writes the wall-clock time it
//! started and ended (`date +%s%N`) into its output folder. For the chain, the overhead of a
//! step is the time from the end of the step before to its own start (the driver sees the
//! child complete, binds the output, submits the next child, which is admitted and spawned).
//! For the fan-out, it is the time from the root's end to each leaf's start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const STEPS: usize = 50;

fn stamps(p: &Path) -> (u128, u128) {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let mut it = text.lines().map(|l| l.trim().parse::<u128>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

const STEP: &str = "date +%s%N > ${{outputs.o}}/t && date +%s%N >> ${{outputs.o}}/t";

fn chain() -> String {
    let mut y = String::from("type: pipeline\nsettings:\n  force_rerun: true\njobs:\n");
    for i in 0..STEPS {
        y.push_str(&format!(
            "  s{i}:\n    command: {STEP}\n    outputs:\n      o:\n"
        ));
        if i > 0 {
            y.push_str(&format!(
                "    inputs:\n      x: ${{{{parent.jobs.s{}.outputs.o}}}}\n",
                i - 1
            ));
        }
    }
    y
}

fn fan_out() -> String {
    let mut y = format!(
        "type: pipeline\nsettings:\n  force_rerun: true\njobs:\n  root:\n    command: {STEP}\n    outputs:\n      o:\n"
    );
    for i in 0..STEPS {
        y.push_str(&format!(
            "  leaf{i}:\n    command: {STEP}\n    inputs:\n      x: ${{{{parent.jobs.root.outputs.o}}}}\n    outputs:\n      o:\n"
        ));
    }
    y
}

/// Runs a pipeline file to its end; returns the seconds it took and each step's stamps.
fn run(bin: &Path, home: &Path, work: &Path, name: &str, yaml: &str) -> f64 {
    run_to_end(bin, home, work, name, yaml, true)
}

/// As [`run`]; `must_complete` false for a sweep whose trials log no metric (it fails, after
/// running every trial).
fn run_to_end(
    bin: &Path,
    home: &Path,
    work: &Path,
    name: &str,
    yaml: &str,
    must_complete: bool,
) -> f64 {
    std::fs::write(work.join(format!("{name}.yml")), yaml).expect("write");
    let t0 = Instant::now();
    let ok = Command::new(bin)
        .args([
            "job",
            "create",
            "-f",
            &format!("{name}.yml"),
            "--name",
            name,
            "--stream",
        ])
        .current_dir(work)
        .env("BERTH_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("create")
        .success();
    assert!(ok || !must_complete, "pipeline {name} failed");
    t0.elapsed().as_secs_f64()
}

fn step_stamps(home: &Path, job: &str) -> (u128, u128) {
    stamps(&home.join("jobs").join(job).join("outputs/o/t"))
}

fn main() {
    let bin = berth_bench::berth_binary();
    let home = tempfile::tempdir().expect("home");
    let work_dir = tempfile::tempdir().expect("work");
    let work = work_dir.path();

    // Baseline: the same 50 commands, one after another, each through `sh -c`.
    let t0 = Instant::now();
    for i in 0..STEPS {
        let f = work.join(format!("sh-{i}"));
        let cmd = STEP.replace("${{outputs.o}}/t", &f.display().to_string());
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .expect("sh")
                .success()
        );
    }
    let sh_total = t0.elapsed().as_secs_f64();

    let mut server = berth_bench::start_server(&bin, home.path());
    let chain_total = run(&bin, home.path(), work, "chain", &chain());
    let gaps: Vec<f64> = (1..STEPS)
        .map(|i| {
            let (_, prev_end) = step_stamps(home.path(), &format!("chain_s{}", i - 1));
            let (start, _) = step_stamps(home.path(), &format!("chain_s{i}"));
            (start as f64 - prev_end as f64) / 1e6
        })
        .collect();
    let fan_total = run(&bin, home.path(), work, "fan", &fan_out());
    let (_, root_end) = step_stamps(home.path(), "fan_root");
    let waits: Vec<f64> = (0..STEPS)
        .map(|i| {
            let (start, _) = step_stamps(home.path(), &format!("fan_leaf{i}"));
            (start as f64 - root_end as f64) / 1e6
        })
        .collect();
    let trials: Vec<String> = (0..STEPS).map(|i| i.to_string()).collect();
    let sweep = format!(
        "type: sweep\ntrial:\n  command: date +%s%N > {w}/trial-${{{{search_space.i}}}} && date +%s%N >> {w}/trial-${{{{search_space.i}}}}\nsampling_algorithm: grid\nsearch_space:\n  i:\n    type: choice\n    values: [{}]\nobjective:\n  goal: minimize\n  primary_metric: unused\nlimits:\n  max_concurrent_trials: 1\n",
        trials.join(", "),
        w = work.display()
    );
    let sweep_total = run_to_end(&bin, home.path(), work, "sweep", &sweep, false);
    let trial_gaps: Vec<f64> = (1..STEPS)
        .map(|i| {
            let (_, prev_end) = stamps(&work.join(format!("trial-{}", i - 1)));
            let (start, _) = stamps(&work.join(format!("trial-{i}")));
            (start as f64 - prev_end as f64) / 1e6
        })
        .collect();
    let _ = server.kill();
    let _ = server.wait();

    let (g50, g99, gmax) = percentiles(gaps);
    let (w50, w99, wmax) = percentiles(waits);
    let (t50, t99, tmax) = percentiles(trial_gaps);
    println!("{STEPS} steps; each writes its start and end time");
    println!(
        "sh -c, in sequence          total {:.2} s  ({:.2} ms a command)",
        sh_total,
        sh_total * 1e3 / STEPS as f64
    );
    println!(
        "chain of {STEPS}                 total {chain_total:.2} s; step end → next step's start p50 {g50:.1} ms  p99 {g99:.1} ms  max {gmax:.1} ms"
    );
    println!(
        "chain overhead a step        {:.1} ms (total minus sh -c, over {STEPS})",
        (chain_total - sh_total) * 1e3 / STEPS as f64
    );
    println!(
        "fan-out of {STEPS}               total {fan_total:.2} s; root end → leaf start p50 {w50:.1} ms  p99 {w99:.1} ms  last {wmax:.1} ms"
    );
    println!(
        "sweep of {STEPS}, one at a time  total {sweep_total:.2} s; trial end → next trial's start p50 {t50:.1} ms  p99 {t99:.1} ms  max {tmax:.1} ms"
    );
}
