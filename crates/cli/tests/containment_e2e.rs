//! A job's limits hold for every process it starts: a `setsid` child is canceled, timed out
//! and memory-limited with it, and a job that kills its own supervisor leaves nothing running.
//! (On a machine where Berth may not make cgroups these fall back to the process group; this
//! machine has them.)

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// True while a live (not zombie) `sleep <tag>` runs anywhere on this machine.
fn marker_alive(tag: &str) -> bool {
    let want = format!("sleep\0{tag}\0");
    pids().any(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline == want.as_bytes() && proc_state(pid).is_some_and(|(state, _)| state != 'Z')
    })
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A unique `sleep` argument for this test run.
fn tag(n: u32) -> String {
    format!("{}.{n}", 7000 + std::process::id() % 1000)
}

/// Submits `command` as job `name` from a fresh folder; returns the folder.
fn submit(s: &Server, name: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.yaml", yaml);
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "job.yaml", "--name", name],
    );
    dir
}

/// Waits for the job to end (`job stream` returns then); its status.
fn ended(s: &Server, name: &str) -> serde_json::Value {
    let _ = s.cli(&["job", "stream", "--name", name]);
    s.status(name)
}

#[test]
fn cancel_stops_a_setsid_child_too() {
    let s = Server::start(&[]);
    let t = tag(1);
    submit(
        &s,
        "escaper",
        &format!("command: setsid sleep {t} & sleep 600\ncompute: azureml:local\n"),
    );
    wait_until("the child runs", || marker_alive(&t));
    s.ok_in(
        std::path::Path::new("."),
        &["job", "cancel", "--name", "escaper"],
    );
    assert_eq!(ended(&s, "escaper")["status"], "Canceled");
    assert!(!marker_alive(&t), "the setsid child outlived the cancel");
}

#[test]
fn a_timeout_stops_a_setsid_child_too() {
    let s = Server::start(&[]);
    let t = tag(2);
    submit(
        &s,
        "slowpoke",
        &format!(
            "command: setsid sleep {t} & sleep 600\ncompute: azureml:local\nlimits:\n  timeout: 1\n"
        ),
    );
    let job = ended(&s, "slowpoke");
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["failure_kind"], "DeadlineExceeded");
    assert!(!marker_alive(&t), "the setsid child outlived the timeout");
}

#[test]
fn the_kernel_enforces_the_memory_limit_on_a_setsid_child() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "types.yaml",
        &instance_type("tiny", "1", "64Mi"),
    );
    s.ok_in(dir.path(), &["instance-type", "apply", "-f", "types.yaml"]);
    submit(
        &s,
        "hungry",
        "command: setsid python3 -c \"b = b'x' * (256 << 20); import time; time.sleep(30)\" & wait\ncompute: azureml:local\nresources:\n  instance_type: tiny\n",
    );
    let job = ended(&s, "hungry");
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["failure_kind"], "OOMKilled", "{job}");
    let msg = job["status_message"].as_str().unwrap_or_default();
    assert!(msg.contains("64Mi") || msg.contains("64.0 MiB"), "{msg}");
}

#[test]
fn a_job_that_kills_its_supervisor_leaves_nothing_running() {
    let s = Server::start(&[]);
    let t = tag(3);
    submit(
        &s,
        "rebel",
        &format!(
            "command: setsid sleep {t} & sleep 0.2; kill -9 $PPID; sleep 600\ncompute: azureml:local\n"
        ),
    );
    let job = ended(&s, "rebel");
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(
        !marker_alive(&t),
        "the job kept running after its supervisor died"
    );
}

#[test]
fn compute_show_says_how_local_jobs_are_contained() {
    let s = Server::start(&[]);
    let local = s.json(&["compute", "show", "--name", "local"]);
    let lines: Vec<_> = local["isolation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("each job in its own cgroup")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Landlock sandbox")),
        "{lines:?}"
    );
}

#[test]
fn a_job_run_as_another_user_writes_its_folder_and_cannot_read_the_server() {
    let s = Server::start(&["--run-as", "nobody"]);
    let h = s.home.path().canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.yaml",
        &format!(
            "command: >-\n  id -u;\n  echo made > outputs/x.txt && cat outputs/x.txt;\n  cat /proc/{pid}/environ > /dev/null 2>&1 || echo environ-denied;\n  cat {h}/token > /dev/null 2>&1 || echo token-denied\ncompute: azureml:local\n",
            pid = s.child.id(),
            h = h.display()
        ),
    );
    let out = s.cli_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yaml", "--name", "guest", "--stream",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    for line in ["65534", "made", "environ-denied", "token-denied"] {
        assert!(
            log.lines().any(|l| l == line),
            "`{line}` missing from:\n{log}"
        );
    }
}

/// True while a spare supervisor (`berth job-supervise --next`) of the server `pid` waits.
fn spare_waits(server: u32) -> bool {
    pids().any(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.ends_with(b"job-supervise\0--next\0")
            && proc_state(pid).is_some_and(|(_, parent)| parent == server)
    })
}

#[test]
fn a_job_a_spare_supervisor_takes_is_contained_and_found_again_after_a_restart() {
    let s = Server::start(&[]);
    wait_until("a spare supervisor waits", || spare_waits(s.child.id()));
    let t = tag(5);
    submit(
        &s,
        "warm",
        &format!("command: setsid sleep {t} & echo started; sleep 600\ncompute: azureml:local\n"),
    );
    let folder = s.home.path().join("jobs/warm");
    wait_until("the job runs", || marker_alive(&t));
    assert!(
        folder.join("cgroup.json").exists(),
        "the job did not go to the spare"
    );
    let home = s.kill9();
    let s = Server::start_in(home, &[], &[]);
    assert_eq!(s.status("warm")["status"], "Running", "re-attached");
    assert!(s.cli(&["job", "cancel", "--name", "warm"]).status.success());
    assert_eq!(ended(&s, "warm")["status"], "Canceled");
    assert!(!marker_alive(&t), "the setsid child outlived cancel");
    let log = std::fs::read_to_string(folder.join("user_logs/std_log.txt")).unwrap();
    assert!(log.contains("started"), "{log}");
}
