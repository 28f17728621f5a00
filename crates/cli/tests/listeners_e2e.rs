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

/// A small deterministic generator: the same bytes every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_truncated_requests_leave_both_listeners_answering() {
    use std::io::Write;
    let s = Server::start(&[]);
    let api = s.api_url.trim_start_matches("http://").to_string();
    let scoring = scoring_addr(&s);
    let valid = [
        "GET /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n",
        "POST /api/v1/endpoint/ep/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nAuthorization: Bearer k\r\n\r\n{\"data\": [",
        "PUT /api/jobs/j/uploads/default/outputs/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
        "GET /api/jobs/%00/files HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let target = if round % 2 == 0 { &api } else { &scoring };
        let Ok(mut conn) = std::net::TcpStream::connect(target) else {
            continue;
        };
        let bytes: Vec<u8> = match rng.below(3) {
            // A valid request cut anywhere.
            0 => {
                let v = valid[rng.below(valid.len())].as_bytes();
                v[..rng.below(v.len() + 1)].to_vec()
            }
            // Random bytes.
            1 => (0..rng.below(2048)).map(|_| rng.next() as u8).collect(),
            // A valid start, then garbage.
            _ => {
                let mut v = valid[rng.below(valid.len())].as_bytes().to_vec();
                v.extend((0..rng.below(512)).map(|_| rng.next() as u8));
                v
            }
        };
        let _ = conn.write_all(&bytes);
        if rng.below(2) == 0 {
            let _ = conn.shutdown(std::net::Shutdown::Write);
        }
    }
    let out = s.cli(&["compute", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, _) = http_post(
        &format!("http://{scoring}/api/v1/endpoint/nope/score"),
        &[("Authorization", "Bearer k")],
        "{}",
    );
    assert_eq!(status, 404);
}
