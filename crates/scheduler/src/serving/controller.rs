//! The one writer of a deployment's state after its revision is stored: a loop per deployment
//! that observes its backend, asks [`reconcile`] what follows, records it (retrying version
//! conflicts, never over a newer revision), and autoscales a serving `target_utilization`
//! deployment. What the server must do in turn (routes, traffic, metrics) arrives as
//! [`ServingEvent`]s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::serving::{DeploymentRecord, DeploymentState};
use berth_core::spec::deployment::ScaleSettings;
use berth_store::{Kind, Store, StoreError};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::reconcile::{Memory, reconcile};
use super::{RevisionPlan, ServingBackend, ServingBackends, ServingError};
use crate::autoscale::Autoscaler;

/// How often a deployment is observed when nothing wakes its loop sooner.
const TICK: Duration = Duration::from_millis(500);

/// What the server does in answer to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServingEvent {
    /// Ready replicas or a state changed: rebuild the routes.
    RoutesChanged,
    /// The deployment succeeded and was created with `--all-traffic`: give it all traffic.
    GiveAllTraffic {
        /// The endpoint.
        endpoint: String,
        /// The deployment.
        deployment: String,
    },
    /// The autoscaler changed the replica count.
    Scaled {
        /// The endpoint.
        endpoint: String,
        /// The deployment.
        deployment: String,
        /// Out (true) or in.
        up: bool,
    },
}

/// A deployment's load as the router measures it: requests in flight, replicas, slots each.
pub type LoadSource = Arc<dyn Fn(&str, &str) -> Option<(usize, usize, u32)> + Send + Sync>;

/// Drives every deployment's revision on its backend.
pub struct Controller {
    store: Store,
    backends: Arc<ServingBackends>,
    events: UnboundedSender<ServingEvent>,
    load: LoadSource,
    plans: Mutex<HashMap<String, RevisionPlan>>,
    looping: Mutex<HashSet<String>>,
    waiting: Mutex<HashMap<String, String>>,
}

impl Controller {
    /// A controller writing to `store`, running on `backends`.
    pub fn new(
        store: Store,
        backends: Arc<ServingBackends>,
        events: UnboundedSender<ServingEvent>,
        load: LoadSource,
    ) -> Arc<Controller> {
        Arc::new(Controller {
            store,
            backends,
            events,
            load,
            plans: Mutex::default(),
            looping: Mutex::default(),
            waiting: Mutex::default(),
        })
    }

    /// The backends.
    pub fn backends(&self) -> &Arc<ServingBackends> {
        &self.backends
    }

    /// Why a deployment's rollout waits, while it does.
    pub fn waiting(&self, key: &str) -> Option<String> {
        self.waiting.lock().ok().and_then(|m| m.get(key).cloned())
    }

    /// Starts the plan's revision (stored already) and follows it; `give_traffic` sends all
    /// of the endpoint's traffic to it once it succeeds.
    pub async fn apply(self: &Arc<Self>, plan: RevisionPlan, give_traffic: bool) {
        let key = plan.key();
        if let Ok(mut m) = self.plans.lock() {
            m.insert(key.clone(), plan.clone());
        }
        if let Err(e) = self.backends.apply(&plan).await {
            let failed = DeploymentState::Failed {
                reason: e.to_string(),
            };
            self.record(&key, plan.revision, failed).await;
            self.emit(ServingEvent::RoutesChanged);
            return;
        }
        self.follow(key, give_traffic);
    }

    /// Stops following the deployment and removes its replicas.
    pub async fn delete(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        let key = plan.key();
        if let Ok(mut m) = self.plans.lock() {
            m.remove(&key);
        }
        let done = self.backends.delete(plan).await;
        self.emit(ServingEvent::RoutesChanged);
        done
    }

    /// The replicas' logs.
    pub async fn logs(&self, plan: &RevisionPlan, lines: usize) -> Result<String, ServingError> {
        self.backends.logs(plan, lines).await
    }

    fn emit(&self, event: ServingEvent) {
        let _ = self.events.send(event);
    }

    fn plan(&self, key: &str) -> Option<RevisionPlan> {
        self.plans.lock().ok()?.get(key).cloned()
    }

    fn set_waiting(&self, key: &str, reason: Option<String>) {
        if let Ok(mut m) = self.waiting.lock() {
            match reason {
                Some(r) => m.insert(key.to_string(), r),
                None => m.remove(key),
            };
        }
    }

    /// Records `next` for `revision`, retrying version conflicts; never over a newer
    /// revision. False when the deployment is gone or has moved on.
    async fn record(&self, key: &str, revision: u32, next: DeploymentState) -> bool {
        loop {
            let cur = match self
                .store
                .get::<DeploymentRecord>(Kind::Deployment, key)
                .await
            {
                Ok(Some(c)) => c,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(deployment = %key, error = %e, "cannot read the deployment");
                    return false;
                }
            };
            match super::reconcile::record_step(
                cur.value.revision,
                &cur.value.state,
                revision,
                &next,
            ) {
                super::reconcile::RecordStep::MovedOn => return false,
                super::reconcile::RecordStep::AlreadyRecorded => return true,
                super::reconcile::RecordStep::Write => {}
            }
            let mut rec = cur.value;
            rec.state = next.clone();
            match self
                .store
                .update(
                    Kind::Deployment,
                    key,
                    cur.resource_version,
                    Some(next.name()),
                    &rec,
                )
                .await
            {
                Ok(_) => return true,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(deployment = %key, error = %e, "cannot record the deployment's state");
                    return false;
                }
            }
        }
    }

    /// Runs the deployment's loop unless one runs already.
    fn follow(self: &Arc<Self>, key: String, give_traffic: bool) {
        if !self.looping.lock().is_ok_and(|mut l| l.insert(key.clone())) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.run(&key, give_traffic).await;
            if let Ok(mut l) = me.looping.lock() {
                l.remove(&key);
            }
            me.set_waiting(&key, None);
            me.emit(ServingEvent::RoutesChanged);
        });
    }

    async fn run(&self, key: &str, give_traffic: bool) {
        let mut memory = Memory {
            give_traffic,
            ..Memory::default()
        };
        let mut scaling: Option<Scaling> = None;
        let mut last_ready: Option<Vec<String>> = None;
        let mut backoff = TICK;
        let mut changes = self.backends.local.replicas().subscribe();
        loop {
            let Some(plan) = self.plan(key) else {
                return;
            };
            let rec = match self
                .store
                .get::<DeploymentRecord>(Kind::Deployment, key)
                .await
            {
                Ok(Some(r)) => r.value,
                // Deleted while it ran: its replicas must not outlive it.
                Ok(None) => {
                    let _ = self.delete(&plan).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(deployment = %key, error = %e, "cannot read the deployment");
                    tokio::time::sleep(TICK).await;
                    continue;
                }
            };
            if rec.state == DeploymentState::Deleting {
                return;
            }
            if rec.revision == plan.revision {
                match self.backends.observe(&plan).await {
                    Ok(observed) => {
                        backoff = TICK;
                        if last_ready.as_ref() != Some(&observed.ready) {
                            last_ready = Some(observed.ready.clone());
                            self.emit(ServingEvent::RoutesChanged);
                        }
                        let d =
                            reconcile(&rec.state, rec.revision, &observed, memory, Instant::now());
                        memory = d.memory;
                        self.set_waiting(key, d.waiting);
                        let mut state = rec.state.clone();
                        if let Some(next) = d.state
                            && self.record(key, rec.revision, next.clone()).await
                        {
                            state = next;
                            self.emit(ServingEvent::RoutesChanged);
                        }
                        if d.give_traffic && state == DeploymentState::Succeeded {
                            self.emit(ServingEvent::GiveAllTraffic {
                                endpoint: plan.endpoint.clone(),
                                deployment: plan.deployment.clone(),
                            });
                        }
                        if state == DeploymentState::Succeeded {
                            self.autoscale(&plan, &mut scaling).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(deployment = %key, error = %e, retry_in = ?backoff, "cannot observe the deployment");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            // Local replicas that become ready or die wake the loop at once.
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// One step of `target_utilization` autoscaling, at most once per polling interval: the
    /// router's measurement is the only input.
    async fn autoscale(&self, plan: &RevisionPlan, scaling: &mut Option<Scaling>) {
        let ScaleSettings::TargetUtilization {
            min_instances,
            max_instances,
            target_utilization_percentage,
            polling_interval,
        } = plan.scale
        else {
            return;
        };
        let now = Instant::now();
        let s = match scaling {
            Some(s) if s.revision == plan.revision => s,
            _ => scaling.insert(Scaling {
                revision: plan.revision,
                scaler: Autoscaler::new(
                    target_utilization_percentage,
                    min_instances,
                    max_instances,
                    polling_interval,
                ),
                started: now,
                next: now + Duration::from_secs(polling_interval.max(1)),
                wanted: plan.replicas,
            }),
        };
        if now < s.next {
            return;
        }
        s.next = now + Duration::from_secs(polling_interval.max(1));
        let Some((load, _, slots)) = (self.load)(&plan.endpoint, &plan.deployment) else {
            return;
        };
        let current = match plan.placement {
            super::Placement::Local => self.backends.local.count(&plan.key()),
            #[cfg(feature = "kubernetes")]
            super::Placement::Cluster { .. } => s.wanted,
        };
        let Some(want) = s.scaler.decide(now - s.started, current, load, slots) else {
            return;
        };
        tracing::info!(deployment = %plan.key(), from = current, to = want, load, "autoscaling");
        self.emit(ServingEvent::Scaled {
            endpoint: plan.endpoint.clone(),
            deployment: plan.deployment.clone(),
            up: want > current,
        });
        match self.backends.scale(plan, want).await {
            Ok(()) => s.wanted = want,
            Err(e) => tracing::warn!(deployment = %plan.key(), error = %e, "autoscaling failed"),
        }
    }
}

/// A revision's autoscaler and when it next decides.
struct Scaling {
    revision: u32,
    scaler: Autoscaler,
    started: Instant,
    next: Instant,
    wanted: u32,
}
