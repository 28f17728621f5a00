//! Handlers for instance types, computes and datastores.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use berth_core::api::{ApplyRequest, ComputeView, DatastoreView, InstanceTypeView};
use berth_core::spec::compute::ComputeSpec;
use berth_core::spec::datastore::DatastoreSpec;
use serde::Deserialize;

use super::ApiJson;
use crate::AppState;
use crate::error::ApiError;
use crate::services::resources as svc;

pub async fn apply_instance_types(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> Result<Json<Vec<InstanceTypeView>>, ApiError> {
    svc::apply_instance_types(&s, req).await.map(Json)
}

pub async fn list_instance_types(
    State(s): State<AppState>,
) -> Result<Json<Vec<InstanceTypeView>>, ApiError> {
    svc::list_instance_types(&s).await.map(Json)
}

pub async fn show_instance_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<InstanceTypeView>, ApiError> {
    svc::get_instance_type(&s, &name)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            kind: "instance type",
            name,
            hint: Some("`berth instance-type list` shows what there is".into()),
        })
}

pub async fn delete_instance_type(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    svc::delete_instance_type(&s, &name)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct AttachQuery {
    #[serde(default)]
    create_namespace: bool,
}

pub async fn attach_compute(
    State(s): State<AppState>,
    Query(q): Query<AttachQuery>,
    ApiJson(spec): ApiJson<ComputeSpec>,
) -> Result<(StatusCode, Json<ComputeView>), ApiError> {
    svc::attach_compute(&s, spec, q.create_namespace)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)))
}

pub async fn list_computes(State(s): State<AppState>) -> Result<Json<Vec<ComputeView>>, ApiError> {
    svc::list_computes(&s).await.map(Json)
}

pub async fn show_compute(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ComputeView>, ApiError> {
    svc::get_compute(&s, &name).await.map(Json)
}

#[derive(Deserialize)]
pub struct DetachQuery {
    #[serde(default)]
    force: bool,
}

pub async fn detach_compute(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DetachQuery>,
) -> Result<StatusCode, ApiError> {
    svc::detach_compute(&s, &name, q.force)
        .await
        .map(|_| StatusCode::NO_CONTENT)
}

pub async fn create_datastore(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<DatastoreSpec>,
) -> Result<(StatusCode, Json<DatastoreView>), ApiError> {
    svc::create_datastore(&s, spec)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)))
}

pub async fn list_datastores(
    State(s): State<AppState>,
) -> Result<Json<Vec<DatastoreView>>, ApiError> {
    svc::list_datastores(&s).await.map(Json)
}

pub async fn show_datastore(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DatastoreView>, ApiError> {
    svc::get_datastore(&s, &name).await.map(Json)
}
