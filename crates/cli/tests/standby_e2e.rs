//! A standby serves the API while it waits: it forwards reads and writes to the leader. A
//! standalone router given both servers (`BERTH_SERVER=A,B`) follows the standby once it
//! takes over, without a restart: a key made by the new leader opens the endpoint through it.

#![allow(clippy::unwrap_used)]

#[path = "support/raw.rs"]
mod raw;
mod support;

use std::time::{Duration, Instant};

use raw::{Raw, database};
use support::serving::{serve_onnx, start_router};
use support::{BERTH, Server, http_post, text};

/// The CLI against the servers at `bases` (comma-separated), with the API token.
fn cli_at(bases: &str, token: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(BERTH)
        .args(args)
        .current_dir(dir)
        .env("BERTH_SERVER", bases)
        .env("BERTH_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn key(shown: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(shown).unwrap();
    v["primaryKey"].as_str().unwrap().to_string()
}

#[test]
fn a_standby_forwards_the_api_and_a_router_follows_it_when_it_takes_over() {
    let url = database();
    let s = Server::start(&["--store", &url]);
    let leader = s.api_url.clone();
    let token = std::fs::read_to_string(berth_server::auth::token_path(s.home.path()))
        .unwrap()
        .trim()
        .to_string();
    let onnx = serve_onnx(&s);

    // A standby on the same home and database, and what it says about itself.
    let standby = Raw::start(s.home.path(), &url);
    let line = standby.said("standby at ", 30);
    let b = line
        .split_once("standby at ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .unwrap()
        .0
        .to_string();
    assert!(line.contains(&format!("(API {leader})")), "{line}");

    // Reads and writes sent to the standby are the leader's.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("job.yml"),
        "command: echo via the standby\n",
    )
    .unwrap();
    cli_at(
        &b,
        &token,
        work.path(),
        &[
            "job", "create", "-f", "job.yml", "--name", "via-b", "--stream",
        ],
    );
    assert_eq!(s.status("via-b")["status"], "Completed");
    let listed = cli_at(
        &b,
        &token,
        work.path(),
        &["job", "list", "-o", "tsv", "--query", "[].name"],
    );
    assert!(listed.lines().any(|l| l.trim() == "via-b"), "{listed}");

    // A router that knows both servers.
    let (router, addr) = start_router(&[
        ("BERTH_SERVER", &format!("{leader},{b}")),
        (
            "BERTH_ROUTER_TOKEN",
            &berth_server::auth::router_token(&token),
        ),
    ]);
    let uri = format!("{addr}/api/v1/endpoint/onnx-endpoint/score");
    let body = std::fs::read_to_string(onnx.join("sample-request.json")).unwrap();
    let score = |key: &str| http_post(&uri, &[("Authorization", &format!("Bearer {key}"))], &body);
    let primary_key = || {
        key(&cli_at(
            &b,
            &token,
            work.path(),
            &[
                "online-endpoint",
                "get-credentials",
                "-n",
                "onnx-endpoint",
                "-o",
                "json",
            ],
        ))
    };
    let old_key = primary_key();
    assert_eq!(score(&old_key).0, 200);

    // The leader dies; the standby takes over.
    let home = s.kill9();
    standby.said("berth server ready", 30);
    cli_at(
        &b,
        &token,
        work.path(),
        &[
            "online-endpoint",
            "regenerate-keys",
            "-n",
            "onnx-endpoint",
            "--key-type",
            "primary",
        ],
    );
    let new_key = primary_key();
    assert_ne!(new_key, old_key);
    // The router learns the new key from the new leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = score(&new_key);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the router did not follow the new leader: {status} {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(score(&old_key).0, 401, "the old key is gone");
    drop(router);
    drop(standby);
    drop(home);
}
