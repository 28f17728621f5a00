//! Handlers for registered assets: environments, models and data, each versioned.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use berth_core::api::AssetCreateRequest;
use berth_core::serving::ModelRecord;
use berth_core::spec::asset::DataRecord;
use berth_core::spec::component::ComponentRecord;
use berth_core::spec::environment::EnvironmentRecord;
use serde::Deserialize;

use super::ApiJson;
use crate::AppState;
use crate::error::ApiError;
use crate::services::{components, data, environments as envs, models};

#[derive(Deserialize)]
pub struct NameFilter {
    name: Option<String>,
}

pub async fn create_environment(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AssetCreateRequest>,
) -> Result<(StatusCode, Json<EnvironmentRecord>), ApiError> {
    envs::create(&s, req)
        .await
        .map(|r| (StatusCode::CREATED, Json(r)))
}

pub async fn list_environments(
    State(s): State<AppState>,
    Query(q): Query<NameFilter>,
) -> Result<Json<Vec<EnvironmentRecord>>, ApiError> {
    envs::list(&s, q.name.as_deref()).await.map(Json)
}

/// `version` may be `latest`.
pub async fn show_environment(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<EnvironmentRecord>, ApiError> {
    envs::get(&s, &name, &version).await.map(Json)
}

pub async fn create_model(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AssetCreateRequest>,
) -> Result<(StatusCode, Json<ModelRecord>), ApiError> {
    models::create(&s, req)
        .await
        .map(|m| (StatusCode::CREATED, Json(m)))
}

pub async fn list_models(
    State(s): State<AppState>,
    Query(q): Query<NameFilter>,
) -> Result<Json<Vec<ModelRecord>>, ApiError> {
    models::list(&s, q.name.as_deref()).await.map(Json)
}

/// `version` may be `latest`.
pub async fn show_model(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelRecord>, ApiError> {
    models::get(&s, &name, &version).await.map(Json)
}

pub async fn create_data(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AssetCreateRequest>,
) -> Result<(StatusCode, Json<DataRecord>), ApiError> {
    data::create(&s, req)
        .await
        .map(|d| (StatusCode::CREATED, Json(d)))
}

pub async fn list_data(
    State(s): State<AppState>,
    Query(q): Query<NameFilter>,
) -> Result<Json<Vec<DataRecord>>, ApiError> {
    data::list(&s, q.name.as_deref()).await.map(Json)
}

/// `version` may be `latest`.
pub async fn show_data(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<DataRecord>, ApiError> {
    data::get(&s, &name, &version).await.map(Json)
}

pub async fn create_component(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AssetCreateRequest>,
) -> Result<(StatusCode, Json<ComponentRecord>), ApiError> {
    components::create(&s, req)
        .await
        .map(|c| (StatusCode::CREATED, Json(c)))
}

pub async fn list_components(
    State(s): State<AppState>,
    Query(q): Query<NameFilter>,
) -> Result<Json<Vec<ComponentRecord>>, ApiError> {
    components::list(&s, q.name.as_deref()).await.map(Json)
}

/// `version` may be `latest`.
pub async fn show_component(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ComponentRecord>, ApiError> {
    components::get(&s, &name, &version).await.map(Json)
}
