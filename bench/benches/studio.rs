//! The studio's job pages with 10,000 jobs in the store: the first page of the list, a page
//! deep in it, a filtered list, and one job's page (server-side render and transfer, one
//! request at a time).
//!
//! `cargo build --release -p berth-cli`, then `cargo bench -p berth-bench --bench studio`.
//! One real job is run; its record is copied 10,000 times straight into the store (as many
//! finished jobs would leave it), and the server is started again on that store.

use std::io::{Read, Write};
use std::time::Instant;

use berth_store::{Kind, Store};

const JOBS: usize = 10_000;

fn get(addr: &str, path: &str, cookie: &str) -> (u16, usize) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("read");
    let head = String::from_utf8_lossy(&out[..out.len().min(64)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out.len())
}

fn login(addr: &str, token: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let body = format!("token={token}&next=/studio/jobs");
    write!(c, "POST /studio/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    out.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

fn time_page(addr: &str, path: &str, cookie: &str) {
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let (status, n) = get(addr, path, cookie);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{path}");
        bytes = n;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{path:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  ({} KB)",
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        bytes / 1024
    );
}

fn api_addr(home: &std::path::Path) -> String {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("server.json")).expect("server.json"))
            .expect("json");
    info["api_url"]
        .as_str()
        .expect("api_url")
        .trim_start_matches("http://")
        .to_string()
}

fn main() {
    let bin = berth_bench::berth_binary();
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    std::fs::write(
        work.path().join("job.yml"),
        "command: echo hi\nname: template\n",
    )
    .expect("job file");
    let mut server = berth_bench::start_server(&bin, home.path());
    let ok = std::process::Command::new(&bin)
        .args(["job", "create", "--file", "job.yml", "--stream"])
        .current_dir(work.path())
        .env("BERTH_HOME", home.path())
        .output()
        .expect("berth job create");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = Store::open(&home.path().join("berth.db"))
            .await
            .expect("store");
        let template = store
            .get::<serde_json::Value>(Kind::Job, "template")
            .await
            .expect("read")
            .expect("template");
        for i in 0..JOBS {
            let name = format!("job_{i:05}");
            let mut record = template.value.clone();
            record["name"] = serde_json::json!(name);
            record["display_name"] = serde_json::json!(name);
            let status = if i % 10 == 0 { "Failed" } else { "Completed" };
            store
                .insert(Kind::Job, &name, Some(status), &record)
                .await
                .expect("insert");
        }
    });

    let mut server = berth_bench::start_server(&bin, home.path());
    let addr = api_addr(home.path());
    let token = std::fs::read_to_string(home.path().join("token")).expect("token");
    let cookie = login(&addr, token.trim());
    println!(
        "{} jobs in the store; 30 sequential requests each, one connection per request",
        JOBS + 1
    );
    time_page(&addr, "/studio/jobs", &cookie);
    time_page(&addr, "/studio/jobs?page=100", &cookie);
    time_page(&addr, "/studio/jobs?status=Failed&q=job_09", &cookie);
    time_page(&addr, "/studio/jobs/job_04242", &cookie);
    let _ = server.kill();
    let _ = server.wait();
}
