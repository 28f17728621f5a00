//! The web studio in headless Chromium: sign in with the server's token, watch a running
//! job's log grow and its metric chart fill, cancel it from its page, and see the compute and
//! catalogue pages. A screenshot of each page goes to `target/studio-screenshots/`.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::browser::Browser;
use support::{Server, http_post, text, write};

/// Logs `loss` for five steps to its own run (standard library only), then prints a line
/// every 0.2 s until it is canceled.
const TICKER: &str = r#"import json, os, time, urllib.request
env = os.environ
for step in range(5):
    body = json.dumps({"run_id": env["MLFLOW_RUN_ID"], "key": "loss", "value": 1.0 / (step + 1), "timestamp": int(time.time() * 1000), "step": step}).encode()
    urllib.request.urlopen(urllib.request.Request(env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", body,
        {"Authorization": "Bearer " + env["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"}))
n = 0
while True:
    print("tick", n, flush=True)
    n += 1
    time.sleep(0.2)
"#;

fn sign_in(b: &Browser, s: &Server, token: &str) {
    b.go(&format!("{}/studio/jobs", s.api_url));
    b.wait_until(
        "return location.pathname === '/studio/login'",
        Duration::from_secs(10),
    );
    b.type_into("#token", token);
    b.click("button[type=submit]");
    b.wait_until(
        "return location.pathname === '/studio/jobs'",
        Duration::from_secs(10),
    );
}

#[test]
fn a_running_jobs_page_shows_its_log_and_chart_and_cancels_it() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/ticker.py", TICKER);
    write(
        dir.path(),
        "job.yml",
        "command: python ticker.py\ncode: src\nname: ticker\n",
    );
    s.ok_in(dir.path(), &["job", "create", "--file", "job.yml"]);
    let token = std::fs::read_to_string(s.home.path().join("token")).unwrap();
    let b = Browser::start();
    sign_in(&b, &s, token.trim());
    b.wait_until(
        "return document.body.innerText.includes('ticker')",
        Duration::from_secs(10),
    );
    b.screenshot("jobs");

    b.go(&format!("{}/studio/jobs/ticker", s.api_url));
    // The log grows while the page is open.
    b.wait_until(
        "return document.getElementById('log').textContent.includes('tick 2')",
        Duration::from_secs(30),
    );
    b.wait_until(
        "return document.getElementById('log').textContent.includes('tick 8')",
        Duration::from_secs(30),
    );
    // The page was rendered before all five points were logged: reload until the chart has
    // them (charts refresh every 10 s; a reload is quicker).
    let chart = "document.querySelector(\"figure[data-keys='loss']\")";
    for _ in 0..50 {
        if b.eval(&format!(
            "return !!{chart} && {chart}.dataset.points === '5'"
        )) == serde_json::json!(true)
        {
            break;
        }
        b.go(&format!("{}/studio/jobs/ticker", s.api_url));
        std::thread::sleep(Duration::from_millis(300));
    }
    b.wait_until(
        &format!("return {chart}.dataset.points === '5' && !!{chart}.querySelector('canvas')"),
        Duration::from_secs(15),
    );
    b.screenshot("job");

    b.click("button.danger");
    b.wait_until(
        "return document.body.innerText.includes('Canceled')",
        Duration::from_secs(30),
    );
    assert_eq!(s.status("ticker")["status"], "Canceled");
    b.screenshot("job-canceled");

    b.go(&format!("{}/studio/computes", s.api_url));
    b.wait_until(
        "return document.body.innerText.includes('free of')",
        Duration::from_secs(10),
    );
    b.screenshot("computes");
    b.go(&format!("{}/studio/assets-list", s.api_url));
    b.wait_until(
        "return document.body.innerText.includes('Environments')",
        Duration::from_secs(10),
    );
    b.screenshot("models-and-environments");
}

#[test]
fn a_pipelines_page_lists_its_steps_with_their_jobs_and_reuse() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        "type: pipeline\njobs:\n  prep:\n    command: echo x > ${{outputs.o}}/x\n    outputs:\n      o:\n  train:\n    command: cat ${{inputs.d}}/x\n    inputs:\n      d: ${{parent.jobs.prep.outputs.o}}\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "first", "--stream",
        ],
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "again", "--stream",
        ],
    );
    let token = std::fs::read_to_string(s.home.path().join("token")).unwrap();
    let b = Browser::start();
    sign_in(&b, &s, token.trim());
    b.go(&format!("{}/studio/jobs/again", s.api_url));
    b.wait_until(
        "return document.getElementById('steps-h') !== null",
        Duration::from_secs(10),
    );
    let steps =
        b.eval("return document.querySelector('section[aria-labelledby=steps-h]').innerText");
    let steps = steps.as_str().unwrap();
    assert!(
        steps.contains("prep") && steps.contains("reused first_prep"),
        "{steps}"
    );
    assert!(steps.contains("reused first_train"), "{steps}");
    b.screenshot("pipeline");
    b.click("a[href='/studio/jobs/first_prep']");
    b.wait_until(
        "return location.pathname === '/studio/jobs/first_prep'",
        Duration::from_secs(10),
    );
}

#[test]
fn a_wrong_token_on_the_login_page_is_refused_without_a_session() {
    let s = Server::start(&[]);
    let (status, body) = http_post(
        &format!("{}/studio/login", s.api_url),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=wrong&next=/studio/jobs",
    );
    assert_eq!(status, 401);
    assert!(
        body.contains("not this server&#39;s API token")
            || body.contains("not this server's API token"),
        "{body}"
    );
    // No page without a session: the login page instead.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("{}/studio/jobs/x", s.api_url),
        ])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).starts_with("303 ")
            && text(&out.stdout).contains("/studio/login?next=/studio/jobs/x"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_cancel_form_without_the_sessions_token_is_refused() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("go");
    support::gated_job(dir.path(), &flag, None, "done");
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "job.yaml", "--name", "held"],
    );
    let token = std::fs::read_to_string(s.home.path().join("token")).unwrap();
    let b = Browser::start();
    sign_in(&b, &s, token.trim());
    // A forged form: the session's cookie goes with it (same site), its token does not.
    let script = "return fetch('/studio/jobs/held/cancel', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=forged'}).then(r => r.status)";
    let status = b.eval(script);
    assert_eq!(status, 403);
    assert_ne!(s.status("held")["status"], "Canceled");
    // The job must see the flag before the test's folder (and the flag) goes, or it outlives
    // the test.
    std::fs::write(&flag, "").unwrap();
    s.ok_in(dir.path(), &["job", "stream", "--name", "held"]);
}

#[test]
fn an_endpoints_charts_move_under_load() {
    let s = Server::start(&[]);
    let (uri, key, _) = support::serving::serve_blue(&s);
    let token = std::fs::read_to_string(s.home.path().join("token")).unwrap();
    let b = Browser::start();
    sign_in(&b, &s, token.trim());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (done, stop, key) = (done.clone(), stop.clone(), key.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                support::serving::load(uri.clone(), key.clone(), 20, done.clone())
                    .join()
                    .unwrap();
            }
        })
    };
    b.go(&format!("{}/studio/endpoints", s.api_url));
    b.wait_until(
        "return document.body.innerText.includes('blue')",
        Duration::from_secs(10),
    );
    // The traffic is sampled every 10 s and the charts redraw every 10 s.
    let chart = "document.querySelector(\"figure[data-keys^='requests_per_second']\")";
    b.wait_until(
        &format!("return !!{chart} && Number({chart}.dataset.peak || 0) > 0"),
        Duration::from_secs(60),
    );
    b.wait_until(
        "return !!document.querySelector(\"figure[data-keys^='latency'] canvas\")",
        Duration::from_secs(20),
    );
    // The replicas' memory, sampled from their cgroups.
    let memory = "document.querySelector(\"figure[data-keys='system/memory_usage_megabytes']\")";
    b.wait_until(
        &format!("return !!{memory} && Number({memory}.dataset.peak || 0) > 1"),
        Duration::from_secs(30),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    let page = b
        .eval("return document.documentElement.outerHTML")
        .to_string();
    assert!(!page.contains(&key), "a key is in the page");
    b.screenshot("endpoints");
}
