//! Resource use over time, recorded as MLflow metrics so the studio and `job metrics` read
//! them like any other: each running local job's CPU, memory and GPUs (`system/*` of its
//! run), and the local compute's used and free capacity (run `compute.local` of experiment
//! `berth.computes`, seven days kept).

mod computes;
mod jobs;
pub mod usage;

use std::time::Duration;

use crate::AppState;

/// How often the monitor wakes.
const TICK: Duration = Duration::from_secs(5);

/// Starts the monitor; it runs as long as the server.
pub fn start(state: AppState) {
    tokio::spawn(async move {
        let mut jobs = jobs::JobSampler::default();
        let mut computes = computes::ComputeSampler::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            jobs.tick(&state).await;
            computes.tick(&state).await;
        }
    });
}
