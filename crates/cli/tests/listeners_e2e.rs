//! What the server's listeners allow their clients: idle sockets are capped and closed, the
//! API keeps its own budget, and the API serves HTTPS (plain HTTP only on loopback).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::time::Duration;

use support::*;

/// The scoring listener's `host:port`, from the server's `server.json`.
fn scoring_addr(s: &Server) -> String {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.home.path().join("server.json")).unwrap()).unwrap();
    let url = info["scoring_url"].as_str().unwrap();
    url.trim_start_matches("http://").to_string()
}

/// True when the server closed `conn` (read gives end of file or a reset) by `deadline`.
fn closed_by_server(conn: &mut std::net::TcpStream, deadline: std::time::Instant) -> bool {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_sockets_beyond_the_scoring_cap_neither_reach_the_api_nor_stay_open() {
    let s = Server::start(&["--max-connections", "20", "--idle-timeout-seconds", "1"]);
    let scoring = scoring_addr(&s);
    let mut idle: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(&scoring).unwrap())
        .collect();
    // The API answers while the scoring side is full.
    let out = s.cli(&["compute", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every idle socket is closed: those over the cap at once, the others when idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let open: Vec<_> = idle
        .iter_mut()
        .enumerate()
        .filter_map(|(i, c)| (!closed_by_server(c, deadline)).then_some(i))
        .collect();
    assert!(open.is_empty(), "sockets left open: {open:?}");
    // And scoring takes requests again.
    let (status, _) = http_post(
        &format!("http://{scoring}/api/v1/endpoint/nope/score"),
        &[("Authorization", "Bearer k")],
        "{}",
    );
    assert_eq!(status, 404);
}

#[test]
fn with_few_descriptors_the_api_keeps_its_share() {
    // Of 300 descriptors, 256 are kept back: scoring gets 33 connections, the API 16.
    let s = Server::start_with_open_files(300);
    let scoring = scoring_addr(&s);
    let _idle: Vec<_> = (0..400)
        .map(|_| std::net::TcpStream::connect(&scoring).unwrap())
        .collect();
    let out = s.cli(&["compute", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_api_serves_https_from_pem_files() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let s = Server::start(&[
        "--api-tls-cert",
        &cert.to_string_lossy(),
        "--api-tls-key",
        &key.to_string_lossy(),
    ]);
    assert!(s.api_url.starts_with("https://"), "{}", s.api_url);
    let out = std::process::Command::new(BERTH)
        .args(["compute", "list", "-o", "tsv"])
        .env("BERTH_HOME", s.home.path())
        .env("BERTH_CA_CERT", &cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("local"), "{}", text(&out.stdout));
}

#[test]
fn a_plain_http_api_off_loopback_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BERTH)
        .args([
            "server",
            "--api-listen",
            "0.0.0.0:0",
            "--scoring-listen",
            "127.0.0.1:0",
        ])
        .env("BERTH_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("the API listener 0.0.0.0:")
            && err.contains("is not on loopback and has no TLS"),
        "{err}"
    );
    assert!(err.contains("--api-tls-cert"), "{err}");
}
