//! Handlers for registered assets: environments.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use berth_core::api::AssetCreateRequest;
use berth_core::spec::environment::EnvironmentRecord;
use serde::Deserialize;

use super::ApiJson;
use crate::AppState;
use crate::error::ApiError;
use crate::services::environments as envs;

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
