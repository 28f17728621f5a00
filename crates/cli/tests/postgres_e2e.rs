//! `berth server --store postgres://...`: the seed's job and endpoint on a server whose state
//! is in PostgreSQL (a cluster this test process starts), kept across a `kill -9` restart,
//! with nothing of it in the home's SQLite.

#![allow(clippy::unwrap_used)]

#[path = "support/raw.rs"]
mod raw;
mod support;

use raw::{Raw, database};
use support::{Server, seed_dir, text};

#[test]
fn the_seed_job_and_endpoint_run_on_postgres_and_survive_a_restart() {
    let url = database();
    let s = Server::start(&["--store", &url]);
    let (uri, key, _) = support::serving::serve_blue(&s);
    s.ok_in(
        &seed_dir(),
        &[
            "datastore",
            "create",
            "--name",
            "mydata",
            "--path",
            "./data",
        ],
    );
    let out = s.ok_in(
        &seed_dir(),
        &[
            "job",
            "create",
            "--file",
            "training-job.yaml",
            "--name",
            "pg1",
            "--set",
            "resources.instance_type=cpu-small",
            "--stream",
        ],
    );
    assert!(text(&out.stdout).contains("epoch 50/50"));
    assert_eq!(s.status("pg1")["status"], "Completed");
    let body = std::fs::read_to_string(seed_dir().join("sample-request.json")).unwrap();
    let auth = format!("Bearer {key}");
    let (status, answer) = support::http_post(
        &uri,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        !s.home.path().join("berth.db").exists(),
        "the state is in PostgreSQL, not in the home"
    );

    // The same home and database after a kill -9: the job, the endpoint and its key are there.
    let home = s.kill9();
    let s = Server::start_in(home, &["--store", &url], &[]);
    assert_eq!(s.status("pg1")["status"], "Completed");
    let listed = text(
        &s.ok_in(
            &seed_dir(),
            &["job", "list", "-o", "tsv", "--query", "[].name"],
        )
        .stdout,
    );
    assert!(listed.lines().any(|l| l.trim() == "pg1"), "{listed}");
    let shown = s.json(&["online-endpoint", "show", "--name", "my-model-endpoint"]);
    assert_eq!(shown["name"], "my-model-endpoint", "{shown}");
}

#[test]
fn a_server_pointed_at_an_unreachable_database_exits_saying_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::BERTH)
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--scoring-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--store",
            &format!("postgres://berth:pw@127.0.0.1:{port}/berth"),
        ])
        .env("BERTH_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect to the store") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(!err.contains(":pw@"), "the password is not printed: {err}");
}

#[test]
fn a_second_server_waits_as_standby_and_takes_over_a_running_job_when_the_leader_dies() {
    let url = database();
    let s = Server::start(&["--store", &url]);
    let work = tempfile::tempdir().unwrap();
    let gate = work.path().join("go");
    std::fs::write(
        work.path().join("job.yml"),
        format!(
            "command: while [ ! -e {} ]; do sleep 0.05; done; echo after the failover\n",
            gate.display()
        ),
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &["job", "create", "-f", "job.yml", "--name", "long"],
    );
    // The same home and database: it waits, saying who leads.
    let standby = Raw::start(s.home.path(), &url);
    let line = standby.said("standby", 30);
    assert!(line.contains("leads on this database"), "{line}");

    let killed = std::time::Instant::now();
    let home = s.kill9();
    standby.said("berth server ready", 30);
    let took = killed.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "took over in {took:?}"
    );
    eprintln!("failover: {} ms", took.as_millis());

    // The job the dead leader started is the new leader's now: it ends, and is seen to.
    std::fs::write(&gate, "").unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(support::BERTH)
            .args(args)
            .env("BERTH_HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let streamed = cli(&["job", "stream", "--name", "long"]);
    assert!(streamed.contains("after the failover"), "{streamed}");
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&["job", "show", "--name", "long", "-o", "json"])).unwrap();
    assert_eq!(shown["status"], "Completed", "{shown}");
}

#[test]
fn a_paused_leader_loses_its_lease_and_stops_when_it_wakes() {
    let url = database();
    // One home, as a leader and its standby share it on one machine (or on a shared volume).
    let home = tempfile::tempdir().unwrap();
    let mut a = Raw::start(home.path(), &url);
    a.said("berth server ready", 30);
    let b = Raw::start(home.path(), &url);
    b.said("standby", 30);
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &a.child.id().to_string()])
            .status()
            .unwrap()
    };
    stop("-STOP");
    // b takes the lease, but the paused leader still holds the home: b waits for it.
    b.said("waiting for", 30);
    stop("-CONT");
    // Its next renewal finds the lease taken: it stops instead of acting beside b.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the paused leader kept running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(75));
    b.said("berth server ready", 30);
}
