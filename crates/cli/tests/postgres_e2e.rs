//! `berth server --store postgres://...`: the seed's job and endpoint on a server whose state
//! is in PostgreSQL (a cluster this test process starts), kept across a `kill -9` restart,
//! with nothing of it in the home's SQLite.

#![allow(clippy::unwrap_used)]

#[path = "../../store/tests/support/postgres.rs"]
mod postgres;
mod support;

use support::{Server, seed_dir, text};

fn database() -> String {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(postgres::database())
}

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
