//! The endpoints page: each endpoint's deployments with their state, replicas and traffic
//! share (and mirror), and per deployment charts of requests, errors and latency. Keys and
//! tokens are never in the page.

use axum::extract::State;
use axum::response::Response;
use berth_core::serving::{DeploymentRecord, EndpointRecord};
use berth_store::Kind;
use maud::html;

use super::layout::{shell, status};
use super::session::Session;
use crate::AppState;

fn share(traffic: &serde_json::Value, deployment: &str) -> String {
    traffic
        .get(deployment)
        .map(|v| format!("{v}%"))
        .unwrap_or_else(|| "0%".into())
}

/// `GET /studio/endpoints`.
pub async fn list(State(s): State<AppState>, session: Session) -> Response {
    let endpoints = match s.store.list::<EndpointRecord>(Kind::Endpoint).await {
        Ok(e) => e,
        Err(e) => return super::failed(&e.to_string()),
    };
    let deployments = s
        .store
        .list::<DeploymentRecord>(Kind::Deployment)
        .await
        .unwrap_or_default();
    let body = html! {
        @if endpoints.is_empty() { p { "No endpoints yet: " code { "berth online-endpoint create --file endpoint.yaml" } } }
        @for ep in &endpoints {
            @let view = crate::services::endpoints::view(&s, ep);
            @let traffic = serde_json::to_value(&view.traffic).unwrap_or_default();
            @let mirror = serde_json::to_value(&view.mirror_traffic).unwrap_or_default();
            section aria-labelledby={"ep-" (view.name)} {
                h2 id={"ep-" (view.name)} { (view.name) " " (status(&format!("{:?}", view.provisioning_state))) }
                p { "Scoring URI: " code { (view.scoring_uri) } " · auth: " (format!("{:?}", view.auth_mode)) }
                @if mirror.as_object().is_some_and(|m| !m.is_empty()) { p { "Mirrored: " (mirror) } }
                table {
                    thead { tr { th scope="col" { "Deployment" } th scope="col" { "State" } th scope="col" { "Ready replicas" } th scope="col" { "Instance type" } th scope="col" { "Traffic" } } }
                    tbody {
                        @for d in deployments.iter().filter(|d| d.value.spec.endpoint_name == view.name) {
                            @let dv = crate::api::deployment_view(&s, d);
                            tr {
                                td { (dv.spec.name) }
                                td { (status(&format!("{:?}", dv.provisioning_state))) @if let Some(r) = &dv.reason { " " (r) } }
                                td { (dv.ready_replicas) " of " (dv.spec.instance_count) }
                                td { (dv.spec.instance_type.clone().unwrap_or_default()) }
                                td { (share(&traffic, &dv.spec.name)) }
                            }
                        }
                    }
                }
                @for d in deployments.iter().filter(|d| d.value.spec.endpoint_name == view.name) {
                    @let run = crate::monitor::endpoint_run(&view.name, &d.value.spec.name);
                    figure class="chart" data-run=(run) data-keys="requests_per_second,status_5xx_per_second" data-x="time" {
                        figcaption { (d.value.spec.name) ": requests and 5xx per second" }
                    }
                    figure class="chart" data-run=(run) data-keys="latency_p50_ms,latency_p99_ms" data-x="time" {
                        figcaption { (d.value.spec.name) ": latency p50 and p99 (ms)" }
                    }
                    figure class="chart" data-run=(run) data-keys="system/cpu_cores_used,replicas" data-x="time" {
                        figcaption { (d.value.spec.name) ": CPU cores used by its replicas, and replicas" }
                    }
                    figure class="chart" data-run=(run) data-keys="system/memory_usage_megabytes" data-x="time" {
                        figcaption { (d.value.spec.name) ": memory of its replicas (MB)" }
                    }
                }
            }
        }
    };
    super::page(shell(
        "Endpoints",
        "/studio/endpoints",
        &session.csrf(&s),
        body,
    ))
}
