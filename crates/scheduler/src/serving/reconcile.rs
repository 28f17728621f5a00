//! The deployment life cycle as a pure function: what a backend observed, and what the
//! controller remembers, decide the next state. No I/O and no clock of its own: `now` is given,
//! so every transition is tested in microseconds.

use std::time::Duration;

use berth_core::serving::DeploymentState;
use tokio::time::Instant;

use super::{Observed, Rollout};

/// How long a rollout may wait for the scheduler to place a replica before it fails (a cluster
/// autoscaler may add a node meanwhile).
pub const UNSCHEDULABLE_FOR: Duration = Duration::from_secs(600);

/// What the controller carries from one reconcile to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Since when a replica of the rollout in progress cannot be placed.
    pub stuck_since: Option<Instant>,
    /// Send all of the endpoint's traffic to the deployment once it succeeds.
    pub give_traffic: bool,
}

/// What to do after one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The state to record, when it changes.
    pub state: Option<DeploymentState>,
    /// Why the rollout waits, while it does (shown as the deployment's reason).
    pub waiting: Option<String>,
    /// Send all traffic to the deployment now.
    pub give_traffic: bool,
    /// What to remember.
    pub memory: Memory,
}

/// The next step for a deployment in `state` at `revision`, given what its backend observed.
pub fn reconcile(
    state: &DeploymentState,
    revision: u32,
    observed: &Observed,
    memory: Memory,
    now: Instant,
) -> Decision {
    let busy = matches!(state, DeploymentState::Creating | DeploymentState::Updating);
    let mut d = Decision {
        state: None,
        waiting: None,
        give_traffic: false,
        memory: Memory {
            stuck_since: None,
            ..memory
        },
    };
    match &observed.rollout {
        Rollout::Complete if busy => {
            d.state = Some(DeploymentState::Succeeded);
            d.give_traffic = memory.give_traffic;
            d.memory.give_traffic = false;
        }
        // A serving deployment with no replica left that cannot start again is down too.
        Rollout::Failed(reason)
            if busy || (*state == DeploymentState::Succeeded && observed.ready.is_empty()) =>
        {
            let reason = if *state == DeploymentState::Updating {
                format!(
                    "update to revision {revision} failed: {reason}; the previous revision keeps serving"
                )
            } else {
                reason.clone()
            };
            d.state = Some(DeploymentState::Failed { reason });
        }
        Rollout::Unplaceable(reason) if busy => {
            let minutes = UNSCHEDULABLE_FOR.as_secs() / 60;
            let since = memory.stuck_since.unwrap_or(now);
            d.memory.stuck_since = Some(since);
            if now.duration_since(since) >= UNSCHEDULABLE_FOR {
                d.state = Some(DeploymentState::Failed {
                    reason: format!(
                        "replicas could not be placed for {minutes} minutes: {reason}; add nodes or pick a smaller instance type"
                    ),
                });
            } else {
                d.waiting = Some(format!(
                    "replicas cannot be placed: {reason} (the deployment fails if this lasts {minutes} minutes)"
                ));
            }
        }
        _ => {}
    }
    d
}

/// What recording a decided state does with the deployment's stored record, read afresh
/// (first, and again after each version conflict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStep {
    /// The record is at another revision (an update came, or it was recreated): the decision
    /// is stale and nothing is written.
    MovedOn,
    /// The record already says so.
    AlreadyRecorded,
    /// Write it (at the version read; a conflict reads again and asks again).
    Write,
}

/// The step for writing `next`, decided for `revision`, over a stored record at
/// `stored_revision` in `stored`. One writer of deployment state for both backends.
pub fn record_step(
    stored_revision: u32,
    stored: &DeploymentState,
    revision: u32,
    next: &DeploymentState,
) -> RecordStep {
    if stored_revision != revision {
        RecordStep::MovedOn
    } else if stored == next {
        RecordStep::AlreadyRecorded
    } else {
        RecordStep::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_conflict_with_an_update_gives_up_and_with_anything_else_writes_again() {
        let ok = DeploymentState::Succeeded;
        // First read: revision 2 is Updating; the decision for 2 is written.
        assert_eq!(
            record_step(2, &DeploymentState::Updating, 2, &ok),
            RecordStep::Write
        );
        // The write conflicted: another writer moved the record to revision 3.
        assert_eq!(
            record_step(3, &DeploymentState::Updating, 2, &ok),
            RecordStep::MovedOn
        );
        // Or it only touched the record at the same revision: write again.
        assert_eq!(
            record_step(2, &DeploymentState::Updating, 2, &ok),
            RecordStep::Write
        );
        // Or it recorded the same state already.
        assert_eq!(record_step(2, &ok, 2, &ok), RecordStep::AlreadyRecorded);
    }

    fn seen(rollout: Rollout, ready: usize) -> Observed {
        Observed {
            ready: (0..ready).map(|i| format!("10.0.0.{i}:5001")).collect(),
            rollout,
        }
    }

    #[test]
    fn a_complete_rollout_succeeds_and_gives_traffic_once() {
        let now = Instant::now();
        let memory = Memory {
            give_traffic: true,
            ..Memory::default()
        };
        let d = reconcile(
            &DeploymentState::Creating,
            1,
            &seen(Rollout::Complete, 2),
            memory,
            now,
        );
        assert_eq!(d.state, Some(DeploymentState::Succeeded));
        assert!(d.give_traffic);
        assert!(!d.memory.give_traffic);
        let again = reconcile(
            &DeploymentState::Succeeded,
            1,
            &seen(Rollout::Complete, 2),
            d.memory,
            now,
        );
        assert_eq!((again.state, again.give_traffic), (None, false));
    }

    #[test]
    fn a_failed_update_says_the_previous_revision_keeps_serving() {
        let d = reconcile(
            &DeploymentState::Updating,
            3,
            &seen(Rollout::Failed("init() failed: boom".into()), 2),
            Memory::default(),
            Instant::now(),
        );
        assert_eq!(
            d.state,
            Some(DeploymentState::Failed {
                reason: "update to revision 3 failed: init() failed: boom; the previous revision keeps serving".into()
            })
        );
    }

    #[test]
    fn a_crash_loop_fails_a_new_deployment_with_its_reason() {
        let d = reconcile(
            &DeploymentState::Creating,
            1,
            &seen(Rollout::Failed("CrashLoopBackOff: exit 3".into()), 0),
            Memory::default(),
            Instant::now(),
        );
        assert_eq!(
            d.state,
            Some(DeploymentState::Failed {
                reason: "CrashLoopBackOff: exit 3".into()
            })
        );
    }

    #[test]
    fn a_serving_deployment_fails_only_when_no_replica_is_left() {
        let failing = |ready| {
            reconcile(
                &DeploymentState::Succeeded,
                1,
                &seen(Rollout::Failed("exit 1".into()), ready),
                Memory::default(),
                Instant::now(),
            )
            .state
        };
        assert_eq!(failing(1), None);
        assert!(matches!(failing(0), Some(DeploymentState::Failed { .. })));
    }

    #[test]
    fn unplaceable_replicas_wait_then_fail_after_the_timeout() {
        let start = Instant::now();
        let unplaceable = seen(Rollout::Unplaceable("0/1 nodes are available".into()), 0);
        let d = reconcile(
            &DeploymentState::Creating,
            1,
            &unplaceable,
            Memory::default(),
            start,
        );
        assert_eq!(d.state, None);
        assert!(
            d.waiting
                .as_deref()
                .is_some_and(|w| w.starts_with("replicas cannot be placed: 0/1 nodes"))
        );
        assert_eq!(d.memory.stuck_since, Some(start));
        let later = reconcile(
            &DeploymentState::Creating,
            1,
            &unplaceable,
            d.memory,
            start + UNSCHEDULABLE_FOR,
        );
        assert!(matches!(
            later.state,
            Some(DeploymentState::Failed { ref reason }) if reason.starts_with("replicas could not be placed for 10 minutes")
        ));
    }

    #[test]
    fn placement_that_recovers_clears_the_wait() {
        let start = Instant::now();
        let memory = Memory {
            stuck_since: Some(start),
            ..Memory::default()
        };
        let d = reconcile(
            &DeploymentState::Creating,
            1,
            &seen(Rollout::Progressing, 0),
            memory,
            start,
        );
        assert_eq!(
            (d.state, d.waiting, d.memory.stuck_since),
            (None, None, None)
        );
    }

    #[test]
    fn a_deployment_being_deleted_is_left_alone() {
        let d = reconcile(
            &DeploymentState::Deleting,
            1,
            &seen(Rollout::Failed("gone".into()), 0),
            Memory::default(),
            Instant::now(),
        );
        assert_eq!(d.state, None);
    }
}
