//! `job list` as az has it: the newest 50 unless told otherwise, `--max-results`,
//! `--all-results` a page at a time, filters, archived jobs left out; and the API's
//! continuation tokens, refused when changed or taken from another listing.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, http_request, text, write};

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

/// A server with jobs j0..j{n-1}, all completed (odd ones in experiment `odd`).
fn with_jobs(n: usize) -> (Server, tempfile::TempDir) {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let experiment = if i % 2 == 1 { "odd" } else { "even" };
        write(
            dir.path(),
            "job.yml",
            &format!("command: echo {i}\nname: j{i}\nexperiment_name: {experiment}\n"),
        );
        s.ok_in(
            dir.path(),
            &["job", "create", "--file", "job.yml", "--stream"],
        );
    }
    (s, dir)
}

#[test]
fn max_results_all_results_and_filters_list_newest_first() {
    let (s, _dir) = with_jobs(5);
    assert_eq!(names(&s.json(&["job", "list", "-r", "2"])), ["j4", "j3"]);
    assert_eq!(
        names(&s.json(&["job", "list", "--all-results"])),
        ["j4", "j3", "j2", "j1", "j0"]
    );
    assert_eq!(
        names(&s.json(&[
            "job",
            "list",
            "--experiment-name",
            "odd",
            "--status",
            "Completed"
        ])),
        ["j3", "j1"]
    );
    assert!(names(&s.json(&["job", "list", "--status", "Failed"])).is_empty());
    let out = s.cli(&["job", "list", "--max-results", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_results is 0; ask for 1 to 1000"),
        "{}",
        text(&out.stderr)
    );
    let out = s.cli(&["job", "list", "--status", "Done"]);
    assert!(
        text(&out.stderr).contains("`Done` is not a job status"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pages_chain_by_token_and_a_changed_or_foreign_token_is_refused() {
    let (s, _dir) = with_jobs(3);
    let token = std::fs::read_to_string(s.home.path().join("token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let get = |q: &str| {
        http_request(
            "GET",
            &format!("{}/api/jobs?{q}", s.api_url),
            &[("Authorization", &auth)],
            "",
        )
    };
    let (status, head, body) = get("max_results=2");
    assert_eq!(status, 200, "{body}");
    let next = head
        .lines()
        .find_map(|l| l.strip_prefix("berth-continuation: "))
        .unwrap()
        .trim()
        .to_string();
    let (_, head2, body2) = get(&format!("max_results=2&continuation={next}"));
    assert_eq!(names(&serde_json::from_str(&body2).unwrap()), ["j0"]);
    assert!(
        !head2.contains("berth-continuation"),
        "the last page has no token"
    );
    let (seq, sig) = next.split_once('.').unwrap();
    let changed = format!("{}.{sig}", seq.parse::<i64>().unwrap() + 1);
    let (status, _, body) = get(&format!("max_results=2&continuation={changed}"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not one this server gave for this listing"),
        "{body}"
    );
    let (status, _, _) = get(&format!(
        "max_results=2&status=Completed&continuation={next}"
    ));
    assert_eq!(status, 400, "a token of another query");
}

#[test]
fn an_archived_job_leaves_the_list_until_restored_and_a_running_one_cannot_be() {
    let (s, dir) = with_jobs(2);
    s.ok_in(dir.path(), &["job", "archive", "--name", "j0"]);
    assert_eq!(names(&s.json(&["job", "list"])), ["j1"]);
    assert_eq!(names(&s.json(&["job", "list", "--archived-only"])), ["j0"]);
    assert_eq!(
        names(&s.json(&["job", "list", "--include-archived"])),
        ["j1", "j0"]
    );
    assert_eq!(s.status("j0")["archived"], true);
    s.ok_in(dir.path(), &["job", "restore", "--name", "j0"]);
    assert_eq!(names(&s.json(&["job", "list"])), ["j1", "j0"]);
    write(dir.path(), "long.yml", "command: sleep 600\nname: long\n");
    s.ok_in(dir.path(), &["job", "create", "--file", "long.yml"]);
    let out = s.cli(&["job", "archive", "--name", "long"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("only a job that has ended can be archived"),
        "{err}"
    );
    s.ok_in(dir.path(), &["job", "cancel", "--name", "long"]);
    // Ended before the test ends: the job would outlive the server otherwise.
    let streamed = s.cli(&["job", "stream", "--name", "long"]);
    assert!(
        text(&streamed.stderr).contains("Canceled"),
        "{}",
        text(&streamed.stderr)
    );
    assert_eq!(s.status("long")["status"], "Canceled");
}

#[test]
fn tags_and_creation_times_filter_and_a_long_tsv_listing_comes_a_page_at_a_time() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for (name, team) in [("v1", "vision"), ("n1", "nlp"), ("v2", "vision")] {
        write(
            dir.path(),
            "job.yml",
            &format!("command: echo hi\nname: {name}\ntags:\n  team: {team}\n"),
        );
        s.ok_in(dir.path(), &["job", "create", "--file", "job.yml"]);
    }
    assert_eq!(
        names(&s.json(&["job", "list", "--tag", "team=vision"])),
        ["v2", "v1"]
    );
    assert!(names(&s.json(&["job", "list", "--created-after", "2999-01-01"])).is_empty());
    assert_eq!(
        names(&s.json(&["job", "list", "--created-before", "2999-01-01T00:00:00Z"])).len(),
        3
    );
    let out = s.cli(&["job", "list", "--created-after", "yesterday"]);
    assert!(
        text(&out.stderr).contains("created_after=yesterday is not a time"),
        "{}",
        text(&out.stderr)
    );
    // Pages of one, printed as they come.
    let out = s.ok_in(
        dir.path(),
        &["job", "list", "--all-results", "-r", "1", "-o", "tsv"],
    );
    let rows: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(rows, ["v2", "n1", "v1"]);
}
