//! How a deployment's rollout is read from its Deployment and pods.

#![allow(clippy::unwrap_used)]

use super::*;

fn deployment(revision: u32, want: i32, ready: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "ep-blue", "generation": 2},
        "spec": {
            "replicas": want,
            "selector": {},
            "template": {"metadata": {"labels": {"berth.dev/revision": revision.to_string()}}},
        },
        "status": {
            "observedGeneration": 2, "replicas": want, "updatedReplicas": want,
            "readyReplicas": ready,
        },
    }))
    .unwrap()
}

fn pod(waiting: Option<&str>, exit: Option<i32>) -> Pod {
    let state = match (waiting, exit) {
        (Some(r), _) => json!({"waiting": {"reason": r, "message": "m"}}),
        (None, Some(c)) => json!({"terminated": {"exitCode": c}}),
        _ => json!({"running": {}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": "ep-blue-1"},
        "status": {"containerStatuses": [{
            "name": "inference-server", "image": "img:1", "ready": false,
            "restartCount": 0, "imageID": "", "state": state,
        }]},
    }))
    .unwrap()
}

#[test]
fn a_rollout_completes_when_every_replica_of_the_revision_is_ready() {
    assert_eq!(
        rollout_of(&deployment(2, 2, 2), 2, 2, &[]),
        Rollout::Complete
    );
    // Ready for Kubernetes but not yet seen by the router.
    assert_eq!(
        rollout_of(&deployment(2, 2, 2), 2, 1, &[]),
        Rollout::Progressing
    );
    // An older revision's template is still applied.
    assert_eq!(
        rollout_of(&deployment(1, 2, 2), 2, 2, &[]),
        Rollout::Progressing
    );
}

#[test]
fn a_replica_that_cannot_start_fails_the_rollout_with_its_reason() {
    let crash = rollout_of(
        &deployment(1, 1, 0),
        1,
        0,
        &[pod(Some("CrashLoopBackOff"), None)],
    );
    assert!(
        matches!(&crash, Rollout::Failed(r) if r.contains("CrashLoopBackOff") && r.contains("img:1")),
        "{crash:?}"
    );
    let exited = rollout_of(&deployment(1, 1, 0), 1, 0, &[pod(None, Some(3))]);
    assert!(
        matches!(&exited, Rollout::Failed(r) if r.contains("exited with code 3")),
        "{exited:?}"
    );
    let starting = rollout_of(
        &deployment(1, 1, 0),
        1,
        0,
        &[pod(Some("ContainerCreating"), None)],
    );
    assert_eq!(starting, Rollout::Progressing);
}

#[test]
fn a_rollout_past_its_progress_deadline_fails_saying_so() {
    let mut d = deployment(1, 1, 0);
    d.status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"ep-blue-1\" has timed out progressing.",
        }))
        .unwrap(),
    ]);
    let r = rollout_of(&d, 1, 0, &[pod(None, None)]);
    assert!(
        matches!(&r, Rollout::Failed(m) if m.contains("ProgressDeadlineExceeded") && m.contains("timed out")),
        "{r:?}"
    );
    // Still progressing: no verdict yet.
    d.status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({
            "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
        }))
        .unwrap(),
    ]);
    assert_eq!(
        rollout_of(&d, 1, 0, &[pod(None, None)]),
        Rollout::Progressing
    );
}
