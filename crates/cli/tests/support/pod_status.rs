//! The Pod statuses the test kubelet reports, shaped as a kubelet writes them.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

pub async fn patch(pods: &Api<Pod>, name: &str, status: Value) {
    let _ = pods
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await;
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn running_status(container: &str, ip: &str, ready: bool) -> Value {
    let ready_text = if ready { "True" } else { "False" };
    json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": now(),
        "conditions": [{"type": "Ready", "status": ready_text}, {"type": "ContainersReady", "status": ready_text}],
        "containerStatuses": [{"name": container, "ready": ready, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"running": {"startedAt": now()}}}],
    })
}

pub fn waiting_status(container: &str, reason: &str, message: &str) -> Value {
    json!({
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}}}],
    })
}

pub fn ended_status(container: &str, code: i32) -> Value {
    json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now(), "finishedAt": now()}}}],
    })
}

/// An init container exited `code`: with `restartPolicy: Never` the pod fails, else the
/// kubelet backs off restarting it, as a kubelet says.
pub fn init_failed_status(container: &str, init: &str, code: i32, never: bool) -> Value {
    let state = if never {
        json!({"terminated": {"exitCode": code, "reason": "Error", "startedAt": now(), "finishedAt": now()}})
    } else {
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("init container exited with code {code}")}})
    };
    json!({
        "phase": if never { "Failed" } else { "Pending" },
        "conditions": [{"type": "Ready", "status": "False"}],
        "initContainerStatuses": [{"name": init, "ready": false, "restartCount": 0, "image": "local", "imageID": "", "state": state}],
        "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"waiting": {"reason": "PodInitializing"}}}],
    })
}
