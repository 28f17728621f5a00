//! The compute page: each compute's capacity and use (and its use over time), the queued
//! jobs with the reason each waits, the running jobs; for a Kubernetes compute its nodes and
//! instance types.

use axum::extract::State;
use axum::response::Response;
use berth_core::job::JobRecord;
use berth_store::Kind;
use berth_store::page::PageQuery;
use maud::{Markup, html};

use super::layout::{shell, status};
use super::session::Session;
use crate::AppState;

async fn jobs_in(s: &AppState, statuses: &[&str]) -> Vec<JobRecord> {
    let q = PageQuery {
        statuses,
        limit: 100,
        ..Default::default()
    };
    s.store
        .page::<JobRecord>(Kind::Job, &q)
        .await
        .map(|p| p.items.into_iter().map(|j| j.value).collect())
        .unwrap_or_default()
}

fn job_rows(s: &AppState, jobs: &[JobRecord], why: bool) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Compute" } th scope="col" { "Instance type" } @if why { th scope="col" { "Why it waits" } } } }
            tbody { @for j in jobs { tr {
                td { a href={"/studio/jobs/" (super::enc(&j.name))} { (j.name) } }
                td { (status(j.state.status().as_str())) }
                td { (j.compute) }
                td { (j.instance_type.name) }
                @if why { td { (s.jobs.queue_reason(&j.name).unwrap_or_default()) } }
            } } }
        }
    }
}

/// `GET /studio/computes`.
pub async fn list(State(s): State<AppState>, session: Session) -> Response {
    let computes = match crate::services::resources::list_computes(&s).await {
        Ok(c) => c,
        Err(e) => return super::failed(&e.to_string()),
    };
    let queued = jobs_in(&s, &["Queued"]).await;
    let running = jobs_in(&s, &["Preparing", "Running", "Finalizing"]).await;
    let body = html! {
        @for c in &computes {
            @let name = &c.spec.name;
            section aria-labelledby={"c-" (name)} {
                h2 id={"c-" (name)} { (name) " " (status(&c.provisioning_state)) }
                table class="kv" {
                    caption { "Capacity" }
                    tbody {
                        tr { th scope="row" { "CPU" } td { (c.free.cpu.display_cpu()) " free of " (c.capacity.cpu.display_cpu()) } }
                        tr { th scope="row" { "Memory" } td { (c.free.memory.display_bytes()) " free of " (c.capacity.memory.display_bytes()) } }
                        tr { th scope="row" { "GPUs" } td { (c.free.gpus) " free of " (c.capacity.gpus) } }
                        @for line in &c.isolation { tr { th scope="row" { "Isolation" } td { (line) } } }
                    }
                }
                @if let Some(k) = &c.cluster {
                    table class="kv" {
                        caption { "Cluster" }
                        tbody {
                            tr { th scope="row" { "API server" } td { (k.server) } }
                            tr { th scope="row" { "Nodes" } td { (k.nodes) } }
                            tr { th scope="row" { "Instance types" } td { (k.instance_types.join(", ")) } }
                            @if let Some(e) = &k.error { tr { th scope="row" { "Error" } td { (e) } } }
                        }
                    }
                } @else {
                    @let run = crate::monitor::compute_run(name);
                    figure class="chart" data-run=(run) data-keys="capacity/cpu_cores_used,capacity/cpu_cores" data-x="time" { figcaption { "CPU cores: used and total" } }
                    figure class="chart" data-run=(run) data-keys="capacity/memory_used_megabytes,capacity/memory_megabytes" data-x="time" { figcaption { "Memory (MB): used and total" } }
                    figure class="chart" data-run=(run) data-keys="jobs/running,jobs/queued" data-x="time" { figcaption { "Jobs running and queued" } }
                }
            }
        }
        section aria-labelledby="queued-h" {
            h2 id="queued-h" { "Queued jobs (" (queued.len()) ")" }
            (job_rows(&s, &queued, true))
        }
        section aria-labelledby="running-h" {
            h2 id="running-h" { "Running jobs (" (running.len()) ")" }
            (job_rows(&s, &running, false))
        }
    };
    super::page(shell(
        "Compute",
        "/studio/computes",
        &session.csrf(&s),
        body,
    ))
}
