//! `scale_settings.type: target_utilization`: one loop per deployment revision, fed by the
//! router's measurement, resizing local replicas or a cluster Deployment's replica count.

use std::time::Duration;

use berth_core::serving::{DeploymentRecord, DeploymentState, deployment_key};
use berth_core::spec::deployment::ScaleSettings;
use berth_scheduler::autoscale::Autoscaler;

use crate::AppState;
use crate::services::deployments::{get, plan};

/// Runs the autoscaler of a `target_utilization` deployment until its revision changes or it
/// is deleted. The router's measurement is the only input; this is the only thing that scales.
/// On a cluster (`cluster`), it sets the Deployment's replica count instead of starting processes.
pub(crate) fn spawn(
    state: &AppState,
    rec: &DeploymentRecord,
    cluster: Option<berth_scheduler::backend::kubernetes::cluster::Cluster>,
) {
    let ScaleSettings::TargetUtilization {
        min_instances,
        max_instances,
        target_utilization_percentage,
        polling_interval,
    } = rec.spec.scale_settings
    else {
        return;
    };
    let mut scaler = Autoscaler::new(
        target_utilization_percentage,
        min_instances,
        max_instances,
        polling_interval,
    );
    let (st, ep, name, revision) = (
        state.clone(),
        rec.spec.endpoint_name.clone(),
        rec.spec.name.clone(),
        rec.revision,
    );
    let key = deployment_key(&ep, &name);
    let started = tokio::time::Instant::now();
    let mut wanted = match rec.spec.scale_settings {
        ScaleSettings::TargetUtilization { min_instances, .. } => min_instances,
        ScaleSettings::Default => rec.spec.instance_count,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(polling_interval.max(1)));
        loop {
            tick.tick().await;
            let Ok(d) = get(&st, &ep, &name).await else {
                return;
            };
            if d.value.revision != revision || d.value.state != DeploymentState::Succeeded {
                return;
            }
            let Some((load, _, slots)) = st.router.load(&ep, &name) else {
                continue;
            };
            let replicas = match &cluster {
                Some(_) => wanted,
                None => st.replicas.count(&key) as u32,
            };
            let Some(want) = scaler.decide(started.elapsed(), replicas, load, slots) else {
                continue;
            };
            tracing::info!(deployment = %key, from = replicas, to = want, load, "autoscaling");
            st.router.metrics.scaled(&ep, &name, want > replicas);
            let drain =
                Duration::from_millis(d.value.spec.request_settings.request_timeout_ms + 1000);
            let done = match &cluster {
                Some(c) => {
                    berth_scheduler::backend::kubernetes::serving::scale(c, &ep, &name, want).await
                }
                None => st
                    .replicas
                    .resize(&key, &plan(&st, &d.value), want as usize, drain)
                    .await
                    .map(|_| ()),
            };
            match done {
                Ok(()) => wanted = want,
                Err(e) => tracing::warn!(deployment = %key, error = %e, "autoscaling failed"),
            }
        }
    });
}
