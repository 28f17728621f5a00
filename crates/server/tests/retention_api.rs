//! Retention in-process: archived jobs that ended before the cut-off lose their code snapshot
//! and default outputs, keep their record and logs; a dry run measures and removes nothing;
//! jobs not archived, or too recent, are left alone; a retention under a day is refused.

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use berth_core::job::{JobRecord, JobState};
use berth_store::Kind;
use serde_json::json;
use support::{Api, api};
use time::OffsetDateTime;

/// Stores a finished job `name`, ended `days_ago`, with files in its folder under `root`.
async fn finished(
    a: &Api,
    root: &std::path::Path,
    name: &str,
    days_ago: i64,
    archived: bool,
) -> std::path::PathBuf {
    finished_in(a, root, name, days_ago, archived, None).await
}

/// [`finished`], in experiment `experiment` when given.
async fn finished_in(
    a: &Api,
    root: &std::path::Path,
    name: &str,
    days_ago: i64,
    archived: bool,
    experiment: Option<&str>,
) -> std::path::PathBuf {
    let (status, body) = a
        .submit(&format!("name: template_{name}\ncommand: echo hi\n"))
        .await;
    let template = if status == StatusCode::CREATED {
        a.state
            .store
            .get::<JobRecord>(Kind::Job, &format!("template_{name}"))
            .await
            .unwrap()
            .unwrap()
            .value
    } else {
        panic!("{body}")
    };
    let workdir = root.join(name);
    for (rel, text) in [
        ("code/train.py", "print(1)"),
        ("code/outputs/model.bin", "0123456789"),
        ("code/logs/train.log", "epoch 1"),
        ("outputs/model/weights", "abcdef"),
        ("user_logs/std_log.txt", "hi"),
    ] {
        let p = workdir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let ended_at = OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    let record = JobRecord {
        name: name.into(),
        workdir: workdir.to_string_lossy().into_owned(),
        state: JobState::Completed {
            started_at: ended_at,
            ended_at,
        },
        archived,
        experiment_name: experiment
            .map(str::to_string)
            .unwrap_or(template.experiment_name.clone()),
        ..template
    };
    a.state
        .store
        .insert(Kind::Job, name, Some("Completed"), &record)
        .await
        .unwrap();
    workdir
}

#[tokio::test]
async fn a_dry_run_measures_and_a_prune_removes_code_and_outputs_but_not_logs() {
    let a = api().await;
    let root = tempfile::tempdir().unwrap();
    let old = finished(&a, root.path(), "old", 40, true).await;
    let recent = finished(&a, root.path(), "recent", 10, true).await;
    let kept = finished(&a, root.path(), "not_archived", 40, false).await;

    let (status, dry) = a
        .call(
            "POST",
            "/api/jobs/prune",
            Some(json!({"retain_days": 30, "dry_run": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["jobs"], json!(["old"]), "{dry}");
    assert_eq!(
        dry["bytes"],
        8 + 10 + 6,
        "train.py, outputs/model.bin, outputs/model/weights: {dry}"
    );
    assert!(
        old.join("code/train.py").exists(),
        "a dry run removes nothing"
    );

    let (status, done) = a
        .call("POST", "/api/jobs/prune", Some(json!({"retain_days": 30})))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (
            done["jobs"].clone(),
            done["bytes"].clone(),
            done["dry_run"].clone()
        ),
        (json!(["old"]), json!(24), json!(false))
    );
    assert!(!old.join("code/train.py").exists() && !old.join("outputs").exists());
    assert!(old.join("code/logs/train.log").exists() && old.join("user_logs/std_log.txt").exists());
    let (_, shown) = a.call("GET", "/api/jobs/old", None).await;
    assert_eq!(shown["pruned"], true, "{shown}");
    for other in [&recent, &kept] {
        assert!(other.join("code/train.py").exists(), "{}", other.display());
    }
    let (_, again) = a
        .call("POST", "/api/jobs/prune", Some(json!({"retain_days": 30})))
        .await;
    assert_eq!(
        again["jobs"],
        json!([]),
        "a pruned job is not pruned twice: {again}"
    );
}

#[tokio::test]
async fn a_retention_under_a_day_is_refused() {
    let a = api().await;
    let (status, body) = a
        .call("POST", "/api/jobs/prune", Some(json!({"retain_days": 0})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 1"),
        "{body}"
    );
}

#[tokio::test]
async fn an_experiments_own_retention_wins_over_the_servers() {
    use berth_server::services::retention::{Policy, apply};
    let a = api().await;
    let root = tempfile::tempdir().unwrap();
    let nightly_old = finished_in(&a, root.path(), "n_old", 3, true, Some("nightly")).await;
    let nightly_new = finished_in(&a, root.path(), "n_new", 0, true, Some("nightly")).await;
    let iris_mid = finished_in(&a, root.path(), "i_mid", 3, true, Some("iris")).await;
    let iris_old = finished_in(&a, root.path(), "i_old", 40, true, Some("iris")).await;
    let policy = Policy {
        default: Some(30),
        by_experiment: [("nightly".to_string(), 1)].into(),
    };
    let report = apply(&a.state, &policy).await.unwrap();
    let mut pruned = report.jobs.clone();
    pruned.sort();
    assert_eq!(pruned, ["i_old", "n_old"]);
    for (dir, gone) in [
        (&nightly_old, true),
        (&nightly_new, false),
        (&iris_mid, false),
        (&iris_old, true),
    ] {
        assert_eq!(
            !dir.join("code/train.py").exists(),
            gone,
            "{}",
            dir.display()
        );
        assert!(dir.join("code/logs/train.log").exists(), "logs stay");
    }
    // Only the experiments named in the policy have days of their own.
    let nightly_only = Policy {
        default: None,
        by_experiment: [("nightly".to_string(), 1)].into(),
    };
    assert!(
        apply(&a.state, &nightly_only)
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
}
