//! A job's state read from its Job and Pods, in one function without I/O. This is where
//! "stuck in Queued" gets its answer: a Pod the scheduler cannot place keeps the job Queued
//! with the scheduler's own message as the reason.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};

use crate::backend::Phase;
use crate::supervisor::{Ending, RunResult};

/// What the cluster says about a job.
#[derive(Debug, PartialEq)]
pub enum Observed {
    /// Not started yet; the phase says whether it waits for room or is starting.
    Waiting(Phase),
    /// A pod runs the command.
    Running {
        /// The pod.
        pod: String,
    },
    /// It ended.
    Ended(RunResult),
    /// The Job is gone (deleted by a cancel, or by someone else).
    Gone,
}

/// Container waiting reasons that will not resolve by themselves, for a job's pod and a
/// replica's alike.
pub(crate) const FATAL_WAITING: [&str; 7] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
];

fn failed(ending: Ending, exit_code: Option<i32>, message: String) -> Observed {
    Observed::Ended(RunResult {
        ending,
        exit_code,
        message,
    })
}

/// Derives the job's state from its Job (absent when deleted) and its Pods.
pub fn observe(job: Option<&Job>, pods: &[Pod]) -> Observed {
    let Some(job) = job else {
        return Observed::Gone;
    };
    let pod = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if let Some(ended) = from_job(job, pod) {
        return ended;
    }
    let Some(pod) = pod else {
        return Observed::Waiting(Phase::Starting(
            "waiting for the Job controller to create a pod".into(),
        ));
    };
    if let Some(t) = terminated_state(pod) {
        return from_terminated(t);
    }
    if let Some(f) = init_failed(pod) {
        return f;
    }
    unschedulable(pod)
        .or_else(|| cannot_start(pod))
        .unwrap_or_else(|| from_phase(pod))
}

/// What the Job's own conditions and counts say: complete, past its deadline, or failed.
fn from_job(job: &Job, pod: Option<&Pod>) -> Option<Observed> {
    let status = job.status.as_ref();
    for c in status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.status == "True")
    {
        match (c.type_.as_str(), c.reason.as_deref()) {
            ("Complete", _) => return Some(success()),
            ("Failed", Some("DeadlineExceeded")) => {
                let secs = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                return Some(failed(
                    Ending::DeadlineExceeded,
                    None,
                    format!(
                        "limits.timeout ({}s) passed; Kubernetes stopped the job (activeDeadlineSeconds)",
                        secs.unwrap_or_default()
                    ),
                ));
            }
            ("Failed", reason) => {
                if let Some(t) = pod.and_then(terminated_state) {
                    return Some(from_terminated(t));
                }
                if let Some(f) = pod.and_then(init_failed) {
                    return Some(f);
                }
                return Some(failed(
                    Ending::Failed,
                    None,
                    format!(
                        "the Kubernetes Job failed ({}): {}",
                        reason.unwrap_or("no reason"),
                        c.message.as_deref().unwrap_or("no message")
                    ),
                ));
            }
            _ => {}
        }
    }
    (status.and_then(|s| s.succeeded).unwrap_or(0) > 0).then(success)
}

/// The scheduler cannot place the pod: the job is queued with its message.
fn unschedulable(pod: &Pod) -> Option<Observed> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let c = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let why = c.message.clone().unwrap_or_else(|| {
        c.reason
            .clone()
            .unwrap_or_else(|| "not scheduled yet".into())
    });
    Some(Observed::Waiting(Phase::Queued(format!(
        "the Kubernetes scheduler cannot place pod {pod_name}: {why}"
    ))))
}

/// A container (init containers from Berth's image first, then the job's) waits for a
/// reason that will not resolve by itself.
fn cannot_start(pod: &Pod) -> Option<Observed> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let (c, reason, w) = pod
        .status
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            let reason = w.reason.as_deref()?;
            FATAL_WAITING.contains(&reason).then_some((c, reason, w))
        })?;
    let image = image_of(pod, &c.name);
    Some(failed(
        Ending::StartFailed,
        None,
        format!(
            "pod {pod_name} cannot start ({reason}) with image `{image}`: {}",
            w.message.as_deref().unwrap_or("no message")
        ),
    ))
}

/// What the pod's phase says, with what it is doing while it starts.
fn from_phase(pod: &Pod) -> Observed {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let pod_status = pod.status.as_ref();
    match pod_status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => Observed::Running { pod: pod_name },
        Some("Succeeded") => success(),
        Some("Failed") => failed(
            Ending::Failed,
            None,
            format!(
                "pod {pod_name} failed: {}",
                pod_status
                    .and_then(|s| s.message.clone().or(s.reason.clone()))
                    .unwrap_or_else(|| "no reason given".into())
            ),
        ),
        _ => {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "a node".into());
            let init_running = pod_status
                .and_then(|s| s.init_container_statuses.as_ref())
                .into_iter()
                .flatten()
                .find(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            Observed::Waiting(Phase::Starting(match init_running {
                Some(c) if c.name == super::delivery::FETCH_CONTAINER => format!(
                    "pod {pod_name} is on {node}; its init container berth-fetch is fetching the job's files"
                ),
                Some(c) => format!(
                    "pod {pod_name} is on {node}; its init container {} is running",
                    c.name
                ),
                None => format!("pod {pod_name} is on {node}; its container is starting"),
            }))
        }
    }
}

/// Why the Job controller cannot create the job's pod, from the Job's events: the newest
/// `FailedCreate` warning, e.g. `exceeded quota: ...`.
pub fn creation_refused(events: &[Event]) -> Option<String> {
    let e = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .map(|t| t.0)
        })?;
    Some(format!(
        "the Kubernetes Job controller cannot create the pod: {}",
        e.message.as_deref().unwrap_or("no message")
    ))
}

fn success() -> Observed {
    Observed::Ended(RunResult {
        ending: Ending::Succeeded,
        exit_code: Some(0),
        message: String::new(),
    })
}

fn terminated_state(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
}

/// The image a container (init or not) was given in the pod's spec.
fn image_of(pod: &Pod, container: &str) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .find(|c| c.name == container)
        })
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// An init container that ended non-zero: the job's command never ran.
fn init_failed(pod: &Pod) -> Option<Observed> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                failed(
                    Ending::StartFailed,
                    Some(t.exit_code),
                    format!(
                        "pod {name} could not start: init container `{}` (image `{}`) exited with code {}{}; its log is in the job's log",
                        c.name,
                        image_of(pod, &c.name),
                        t.exit_code,
                        t.reason
                            .as_deref()
                            .filter(|r| *r != "Error")
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                )
            })
        })
}

fn from_terminated(t: &ContainerStateTerminated) -> Observed {
    match (t.exit_code, t.reason.as_deref()) {
        (_, Some("OOMKilled")) => failed(
            Ending::OOMKilled,
            Some(t.exit_code),
            "the container used more memory than the instance type's limit (OOMKilled); pick a larger instance type".into(),
        ),
        (0, _) => success(),
        (code, reason) => failed(
            Ending::Failed,
            Some(code),
            format!(
                "the command exited with code {code}{}; see the job's log",
                reason
                    .filter(|r| *r != "Error")
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
