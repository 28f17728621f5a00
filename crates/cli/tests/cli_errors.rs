//! What a person sees when something is wrong: one line with the place, and a hint.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::{BERTH, Server, text, write};

#[test]
fn yaml_errors_print_file_line_column_and_a_hint() {
    let s = Server::start(&[]);
    let dir = s.home.path().join("work");
    write(
        &dir,
        "job.yaml",
        "command: echo hi\nenvironmnt:\n  image: x\n",
    );
    let out = s.cli_in(&dir, &["job", "create", "--file", "job.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: job.yaml:2:1: unknown field `environmnt`"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");

    write(
        &dir,
        "it.yaml",
        "command: x\nresources:\n  instance_type: nope\n",
    );
    let err = text(&s.cli_in(&dir, &["job", "create", "-f", "it.yaml"]).stderr);
    assert!(
        err.starts_with("error: it.yaml:3:18: instance type `nope` does not exist"),
        "{err}"
    );
    assert!(err.contains("berth instance-type apply"), "{err}");

    let err = text(
        &s.cli_in(&dir, &["job", "create", "-f", "missing.yaml"])
            .stderr,
    );
    assert!(err.starts_with("error: cannot read missing.yaml"), "{err}");

    write(&dir, "ok.yaml", "command: echo hi\n");
    let out = s.cli_in(
        &dir,
        &[
            "job",
            "create",
            "-f",
            "ok.yaml",
            "--set",
            "limits.timeout=never",
        ],
    );
    assert!(
        text(&out.stderr).contains("--set limits.timeout"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wrong_token_and_missing_server_are_explained() {
    let s = Server::start(&[]);
    let out = Command::new(BERTH)
        .args(["job", "list"])
        .env("BERTH_SERVER", &s.api_url)
        .env("BERTH_TOKEN", "not-the-token")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("the bearer token is wrong"),
        "{}",
        text(&out.stderr)
    );

    let empty = tempfile::tempdir().expect("tmp");
    let out = Command::new(BERTH)
        .args(["job", "list"])
        .env("BERTH_HOME", empty.path())
        .env_remove("BERTH_SERVER")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no berth server is running") && err.contains("berth server &"),
        "{err}"
    );
}

#[test]
fn second_server_on_the_same_home_is_refused() {
    let s = Server::start(&[]);
    let out = Command::new(BERTH)
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--scoring-listen",
            "127.0.0.1:0",
        ])
        .env("BERTH_HOME", s.home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("another berth server is already using"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_and_query_outputs_use_azure_field_names() {
    let s = Server::start(&[]);
    let dir = s.home.path().join("work");
    write(
        &dir,
        "job.yaml",
        "command: echo hi\ndisplay_name: greet\ntags: {a: b}\n",
    );
    let out = s.cli_in(
        &dir,
        &[
            "job", "create", "-f", "job.yaml", "--name", "j1", "-o", "json",
        ],
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(job["name"], "j1");
    assert_eq!(job["type"], "command");
    assert_eq!(job["display_name"], "greet");
    assert_eq!(job["experiment_name"], "work");
    assert_eq!(job["resources"]["instance_type"], "defaultinstancetype");
    let out = s.cli(&["job", "stream", "-n", "j1"]);
    assert!(out.status.success());
    let out = s.cli(&["job", "show", "-n", "j1", "--query", "status", "-o", "tsv"]);
    assert_eq!(text(&out.stdout).trim(), "Completed");
    let out = s.cli(&["job", "show", "-n", "j1", "-o", "yaml"]);
    assert!(
        text(&out.stdout).contains("status: Completed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_malformed_experiment_retention_stops_the_server_saying_the_form() {
    let home = tempfile::tempdir().expect("tmp");
    let out = Command::new(BERTH)
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--scoring-listen",
            "127.0.0.1:0",
        ])
        .args(["--retain-days-for", "nightly"])
        .env("BERTH_HOME", home.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--retain-days-for nightly") && err.contains("EXPERIMENT=DAYS"),
        "{err}"
    );
}
