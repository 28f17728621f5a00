//! Handlers for online endpoints and online deployments.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use berth_core::api::{DeploymentView, EndpointView};
use berth_core::serving::{DeploymentRecord, EndpointKeys};
use berth_core::spec::endpoint::{MirrorTraffic, TrafficSplit};
use berth_store::Stored;
use serde::Deserialize;

use super::ApiJson;
use crate::AppState;
use crate::error::ApiError;
use crate::services::deployments;
use crate::services::endpoints;

#[derive(Deserialize)]
pub struct EndpointCreate {
    file: String,
    yaml: String,
    #[serde(default)]
    set: Vec<String>,
}

pub async fn create_endpoint(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EndpointCreate>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let ep = endpoints::create(&s, &req.file, &req.yaml, &req.set).await?;
    Ok((StatusCode::CREATED, Json(endpoints::view(&s, &ep))))
}

pub async fn list_endpoints(
    State(s): State<AppState>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let all = s.store.list(berth_store::Kind::Endpoint).await?;
    Ok(Json(all.iter().map(|e| endpoints::view(&s, e)).collect()))
}

pub async fn show_endpoint(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let ep = endpoints::get(&s, &name).await?;
    Ok(Json(endpoints::view(&s, &ep)))
}

#[derive(Deserialize)]
pub struct EndpointUpdate {
    #[serde(default)]
    traffic: Option<String>,
    #[serde(default)]
    mirror_traffic: Option<String>,
}

pub async fn update_endpoint(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<EndpointUpdate>,
) -> Result<Json<EndpointView>, ApiError> {
    let traffic = req
        .traffic
        .as_deref()
        .map(|t| {
            TrafficSplit::parse_cli(t)
                .map_err(|e| ApiError::BadRequest(format!("--traffic \"{t}\": {e}")))
        })
        .transpose()?;
    let mirror = req
        .mirror_traffic
        .as_deref()
        .map(|m| {
            MirrorTraffic::parse_cli(m)
                .map_err(|e| ApiError::BadRequest(format!("--mirror-traffic \"{m}\": {e}")))
        })
        .transpose()?;
    if traffic.is_none() && mirror.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to update: give --traffic and/or --mirror-traffic".into(),
        ));
    }
    let ep = endpoints::set_split(&s, &name, traffic, mirror).await?;
    Ok(Json(endpoints::view(&s, &ep)))
}

pub async fn delete_endpoint(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    endpoints::delete(&s, &name)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub async fn list_keys(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<EndpointKeys>, ApiError> {
    endpoints::keys(&s, &name).await.map(Json)
}

pub async fn get_token(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<endpoints::AccessToken>, ApiError> {
    endpoints::token(&s, &name).await.map(Json)
}

#[derive(Deserialize)]
pub struct Regenerate {
    #[serde(rename = "keyType")]
    key_type: String,
}

pub async fn regenerate_keys(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<Regenerate>,
) -> Result<Json<EndpointKeys>, ApiError> {
    endpoints::regenerate_key(&s, &name, &req.key_type)
        .await
        .map(Json)
}

pub fn dview(s: &AppState, d: &Stored<DeploymentRecord>) -> DeploymentView {
    let key = berth_core::serving::deployment_key(&d.value.spec.endpoint_name, &d.value.spec.name);
    DeploymentView {
        spec: d.value.spec.clone(),
        provisioning_state: d.value.state.provisioning(),
        reason: match &d.value.state {
            berth_core::serving::DeploymentState::Failed { reason } => Some(reason.clone()),
            _ => s.serving.waiting(&key),
        },
        ready_replicas: s.serving.backends().ready(&key).len(),
        resource_version: d.resource_version,
    }
}

pub async fn create_deployment(
    State(s): State<AppState>,
    Path(endpoint): Path<String>,
    ApiJson(req): ApiJson<deployments::DeploymentCreate>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let d = deployments::create(&s, &endpoint, req).await?;
    Ok((StatusCode::ACCEPTED, Json(dview(&s, &d))))
}

pub async fn update_deployment(
    State(s): State<AppState>,
    Path((endpoint, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<deployments::DeploymentCreate>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let d = deployments::update(&s, &endpoint, &name, req).await?;
    Ok((StatusCode::ACCEPTED, Json(dview(&s, &d))))
}

pub async fn list_deployments(
    State(s): State<AppState>,
    Path(endpoint): Path<String>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    endpoints::get(&s, &endpoint).await?;
    let all = endpoints::deployments_of(&s, &endpoint).await?;
    Ok(Json(all.iter().map(|d| dview(&s, d)).collect()))
}

pub async fn show_deployment(
    State(s): State<AppState>,
    Path((endpoint, name)): Path<(String, String)>,
) -> Result<Json<DeploymentView>, ApiError> {
    let d = deployments::get(&s, &endpoint, &name).await?;
    Ok(Json(dview(&s, &d)))
}

#[derive(Deserialize)]
pub struct LogsQuery {
    lines: Option<usize>,
}

pub async fn deployment_logs(
    State(s): State<AppState>,
    Path((endpoint, name)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<String, ApiError> {
    deployments::logs(&s, &endpoint, &name, q.lines.unwrap_or(100)).await
}

pub async fn delete_deployment(
    State(s): State<AppState>,
    Path((endpoint, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    deployments::delete(&s, &endpoint, &name, false)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct RoutesQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    wait: u64,
    /// The epoch of the table the router has; another epoch is answered at once.
    #[serde(default)]
    epoch: Option<u64>,
}

/// The routes for standalone routers; with `since=<version>&wait=<seconds>`, answers when the
/// version is newer than `since` or after `wait` seconds (long-poll), and at once to a router
/// that has another server's table (`epoch`).
pub async fn routes(
    State(s): State<AppState>,
    Query(q): Query<RoutesQuery>,
) -> Json<berth_core::serving::RoutesDoc> {
    let mut rx = s.routes.subscribe();
    let deadline = std::time::Duration::from_secs(q.wait.min(300));
    let _ = tokio::time::timeout(deadline, async {
        loop {
            let answer = {
                let doc = rx.borrow_and_update();
                q.epoch.is_some_and(|e| e != doc.epoch) || doc.version > q.since
            };
            if answer {
                break;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    let doc = rx.borrow().as_ref().clone();
    Json(doc)
}
