//! The REST API's routes: thin handlers over the services.

mod assets;
mod jobs;
mod pod_files;
mod resources;
mod serving;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router, middleware};
use serde::de::DeserializeOwned;
use serving as sv;

use crate::AppState;
use crate::error::ApiError;

/// The bearer token a pod sends (its job's or revision's own), or "".
fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

/// A JSON body whose rejections are API errors (413 for a body over the limit).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(rejection(e)),
        }
    }
}

fn rejection(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the request body is larger than the server accepts".into())
    } else {
        ApiError::BadRequest(format!("the request body is not valid: {}", e.body_text()))
    }
}

/// Routes a Kubernetes pod calls with its own job or revision token instead of the API token:
/// output uploads and the files too large for a ConfigMap.
pub fn pod_routes() -> Router<AppState> {
    Router::new()
        // Output files can be large; each is checked against its job's own upload token.
        .route(
            "/api/jobs/{name}/uploads/{output}/{*path}",
            put(jobs::upload_output).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/jobs/{name}/files", get(pod_files::job_listing))
        .route("/api/jobs/{name}/files/{*path}", get(pod_files::job_file))
        .route(
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files",
            get(pod_files::revision_listing),
        )
        .route(
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files/{*path}",
            get(pod_files::revision_file),
        )
}

/// Every authenticated route under `/api`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(job_routes())
        .merge(resource_routes())
        .merge(asset_routes())
        .merge(serving_routes())
        .route_layer(middleware::from_fn_with_state(
            state,
            crate::auth::require_token,
        ))
}

/// Jobs, their logs and outputs.
fn job_routes() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", post(jobs::create).get(jobs::list))
        .route("/api/jobs/{name}", get(jobs::show))
        .route("/api/jobs/{name}/cancel", post(jobs::cancel))
        .route("/api/jobs/{name}/logs", get(jobs::logs))
        .route(
            "/api/jobs/{name}/outputs/{output}/files",
            get(jobs::output_files),
        )
        .route(
            "/api/jobs/{name}/outputs/{output}/files/{*path}",
            get(jobs::output_file),
        )
}

/// Instance types, computes and datastores.
fn resource_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/instance-types",
            put(resources::apply_instance_types).get(resources::list_instance_types),
        )
        .route(
            "/api/instance-types/{name}",
            get(resources::show_instance_type).delete(resources::delete_instance_type),
        )
        .route(
            "/api/computes",
            post(resources::attach_compute).get(resources::list_computes),
        )
        .route(
            "/api/computes/{name}",
            get(resources::show_compute).delete(resources::detach_compute),
        )
        .route(
            "/api/datastores",
            post(resources::create_datastore).get(resources::list_datastores),
        )
        .route("/api/datastores/{name}", get(resources::show_datastore))
}

/// Versioned environments, models and data assets.
fn asset_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/environments",
            post(assets::create_environment).get(assets::list_environments),
        )
        .route(
            "/api/environments/{name}/versions/{version}",
            get(assets::show_environment),
        )
        .route(
            "/api/models",
            post(assets::create_model).get(assets::list_models),
        )
        .route(
            "/api/models/{name}/versions/{version}",
            get(assets::show_model),
        )
        .route(
            "/api/data",
            post(assets::create_data).get(assets::list_data),
        )
        .route(
            "/api/data/{name}/versions/{version}",
            get(assets::show_data),
        )
}

/// Online endpoints, their deployments, and the routes published to routers.
fn serving_routes() -> Router<AppState> {
    Router::new()
        .route("/api/routes", get(sv::routes))
        .route(
            "/api/endpoints",
            post(sv::create_endpoint).get(sv::list_endpoints),
        )
        .route(
            "/api/endpoints/{name}",
            get(sv::show_endpoint)
                .patch(sv::update_endpoint)
                .delete(sv::delete_endpoint),
        )
        .route("/api/endpoints/{name}/listKeys", post(sv::list_keys))
        .route("/api/endpoints/{name}/token", post(sv::get_token))
        .route(
            "/api/endpoints/{name}/regenerateKeys",
            post(sv::regenerate_keys),
        )
        .route(
            "/api/endpoints/{name}/deployments",
            post(sv::create_deployment).get(sv::list_deployments),
        )
        .route(
            "/api/endpoints/{name}/deployments/{deployment}",
            get(sv::show_deployment)
                .put(sv::update_deployment)
                .delete(sv::delete_deployment),
        )
        .route(
            "/api/endpoints/{name}/deployments/{deployment}/logs",
            get(sv::deployment_logs),
        )
}
