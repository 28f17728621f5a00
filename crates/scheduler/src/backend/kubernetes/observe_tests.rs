use serde_json::json;

use super::*;

fn job(status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": "j"},
        "spec": {"activeDeadlineSeconds": 5, "template": {"spec": {"containers": []}}},
        "status": status,
    }))
    .unwrap()
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "j-abc", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "job", "image": "img:1"}]},
        "status": status,
    }))
    .unwrap()
}

fn ending(o: Observed) -> (Ending, Option<i32>, String) {
    match o {
        Observed::Ended(r) => (r.ending, r.exit_code, r.message),
        other => panic!("not ended: {other:?}"),
    }
}

#[test]
fn an_unschedulable_pod_keeps_the_job_queued_with_the_schedulers_message() {
    let p = pod(json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}));
    match observe(Some(&job(json!({}))), &[p]) {
        Observed::Waiting(Phase::Queued(m)) => {
            assert!(
                m.contains("0/1 nodes are available: 1 Insufficient nvidia.com/gpu"),
                "{m}"
            );
            assert!(m.contains("j-abc"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_job_without_pods_or_a_scheduled_pod_is_starting() {
    assert!(matches!(
        observe(Some(&job(json!({}))), &[]),
        Observed::Waiting(Phase::Starting(_))
    ));
    let p = pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}),
    );
    assert!(matches!(
        observe(Some(&job(json!({}))), &[p]),
        Observed::Waiting(Phase::Starting(m)) if m.contains("n1")
    ));
}

#[test]
fn running_and_completed() {
    let p = pod(json!({"phase": "Running"}));
    assert_eq!(
        observe(Some(&job(json!({"active": 1}))), &[p]),
        Observed::Running {
            pod: "j-abc".into()
        }
    );
    let done = job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
    assert_eq!(ending(observe(Some(&done), &[])).0, Ending::Succeeded);
}

#[test]
fn exit_codes_oom_and_deadline() {
    let failed = job(
        json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    let exited = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}),
    );
    assert_eq!(
        ending(observe(Some(&failed), &[exited])),
        (
            Ending::Failed,
            Some(3),
            "the command exited with code 3; see the job's log".into()
        )
    );
    let oom = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    );
    assert_eq!(ending(observe(Some(&failed), &[oom])).0, Ending::OOMKilled);
    let late = job(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
    );
    let (e, _, m) = ending(observe(Some(&late), &[pod(json!({"phase": "Running"}))]));
    assert_eq!(e, Ending::DeadlineExceeded);
    assert!(m.contains("5s"), "{m}");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_job_naming_the_image() {
    let p = pod(
        json!({"phase": "Pending", "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
    );
    let (e, _, m) = ending(observe(Some(&job(json!({}))), &[p]));
    assert_eq!(e, Ending::StartFailed);
    assert!(m.contains("ImagePullBackOff") && m.contains("img:1"), "{m}");
}

#[test]
fn init_containers_that_cannot_pull_or_fail_end_the_job_naming_them() {
    let with_init = |status: serde_json::Value| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "j-abc"},
            "spec": {"initContainers": [{"name": "berth-fetch", "image": "berth:0.1.0"}],
                "containers": [{"name": "job", "image": "img:1"}]},
            "status": status,
        }))
        .unwrap()
    };
    let waiting = |state: serde_json::Value| json!({"name": "berth-fetch", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": state});
    let main = json!({"name": "job", "ready": false, "restartCount": 0, "image": "img:1", "imageID": "",
        "state": {"waiting": {"reason": "PodInitializing"}}});
    let pulling = with_init(json!({"phase": "Pending",
        "initContainerStatuses": [waiting(json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}))],
        "containerStatuses": [main]}));
    let (e, _, m) = ending(observe(Some(&job(json!({}))), &[pulling]));
    assert_eq!(e, Ending::StartFailed);
    assert!(
        m.contains("ErrImagePull") && m.contains("berth:0.1.0"),
        "{m}"
    );

    let fetching = with_init(json!({"phase": "Pending",
        "initContainerStatuses": [waiting(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))],
        "containerStatuses": [main]}));
    assert!(matches!(
        observe(Some(&job(json!({}))), &[fetching]),
        Observed::Waiting(Phase::Starting(m)) if m.contains("berth-fetch is fetching the job's files")
    ));

    let failed_fetch = with_init(json!({"phase": "Failed",
        "initContainerStatuses": [waiting(json!({"terminated": {"exitCode": 1, "reason": "Error"}}))],
        "containerStatuses": [main]}));
    let failed_job = job(
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    for j in [job(json!({})), failed_job] {
        let (e, code, m) = ending(observe(Some(&j), std::slice::from_ref(&failed_fetch)));
        assert_eq!((e, code), (Ending::StartFailed, Some(1)));
        assert_eq!(
            m,
            "pod j-abc could not start: init container `berth-fetch` (image `berth:0.1.0`) exited with code 1; its log is in the job's log"
        );
    }
}

#[test]
fn a_pod_the_job_controller_may_not_create_is_explained_by_its_event() {
    let event = |reason: &str, at: &str, message: &str| -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("j.{at}")},
            "involvedObject": {"kind": "Job", "name": "j"},
            "reason": reason, "message": message, "type": "Warning",
            "lastTimestamp": at,
        }))
        .unwrap()
    };
    assert_eq!(
        creation_refused(&[event(
            "SuccessfulCreate",
            "2026-01-01T00:00:01Z",
            "Created pod: j-abc"
        )]),
        None
    );
    let why = creation_refused(&[
        event("FailedCreate", "2026-01-01T00:00:01Z", "old"),
        event("FailedCreate", "2026-01-01T00:00:02Z", "pods \"j-x\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0"),
    ])
    .unwrap();
    assert!(
        why.ends_with("exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0"),
        "{why}"
    );
}

#[test]
fn a_deleted_job_is_gone() {
    assert_eq!(observe(None, &[]), Observed::Gone);
}
