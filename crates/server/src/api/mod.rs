//! The REST API's routes: thin handlers over the services.

mod assets;
pub mod documented;
mod jobs;
pub use jobs::{file_stream, log_stream, output_file};
pub use serving::dview as deployment_view;
mod pod_files;
mod resources;
mod serving;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, middleware};
use serde::de::DeserializeOwned;
use serving as sv;

use crate::AppState;
use crate::error::ApiError;
use documented::{Access, Documented};

/// The bearer token a pod sends (its job's or revision's own), or "".
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> &str {
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
pub fn pod_routes() -> Documented<AppState> {
    Documented::new(Access::PodToken)
        // Output files can be large; each is checked against its job's own upload token.
        .at(
            "put",
            "/api/jobs/{name}/uploads/{output}/{*path}",
            "a Kubernetes job's pod uploads one output file (bearer: the job's upload token)",
            put(jobs::upload_output).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .at(
            "get",
            "/api/jobs/{name}/files",
            "a Kubernetes job's pod lists its code and inputs too large for a ConfigMap (bearer: the job's token)",
            get(pod_files::job_listing),
        )
        .at(
            "get",
            "/api/jobs/{name}/files/{*path}",
            "one of those files (bearer: the job's token)",
            get(pod_files::job_file),
        )
        .at(
            "get",
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files",
            "a Kubernetes replica lists its code and model too large for a ConfigMap (bearer: the revision's token)",
            get(pod_files::revision_listing),
        )
        .at(
            "get",
            "/api/endpoints/{name}/deployments/{deployment}/revisions/{revision}/files/{*path}",
            "one of those files (bearer: the revision's token)",
            get(pod_files::revision_file),
        )
}

/// What standalone routers read, with their own token (or the API token).
pub fn router_routes(state: AppState) -> Documented<AppState> {
    Documented::new(Access::RouterToken)
        .at(
            "get",
            "/api/routes",
            "the routing table for standalone routers (?since=VERSION&epoch=E&wait=S waits for a change)",
            get(sv::routes),
        )
        .map_router(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state,
                crate::auth::require_router_token,
            ))
        })
}

/// Every route under `/api` that takes the API token.
pub fn routes(state: AppState) -> Documented<AppState> {
    Documented::new(Access::Token)
        .merge(job_routes())
        .merge(resource_routes())
        .merge(asset_routes())
        .merge(serving_routes())
        .map_router(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state,
                crate::auth::require_token,
            ))
        })
}

/// Jobs, their logs and outputs.
fn job_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .at(
            "post",
            "/api/jobs",
            "submit a command job file",
            post(jobs::create),
        )
        .body("JobCreate")
        .at(
            "get",
            "/api/jobs",
            "list jobs, newest first, a page at a time (?max_results=N (default 100, at most 1000), ?continuation=TOKEN from the `berth-continuation` header, ?status=A,B, ?experiment=E, ?parent=P, ?compute=C, ?archived=include|only)",
            get(jobs::list),
        )
        .at(
            "post",
            "/api/jobs/prune",
            "remove the code snapshots and outputs of archived jobs older than retain_days (records and logs stay); dry_run says what it would free",
            post(jobs::prune),
        )
        .body("PruneRequest")
        .at(
            "post",
            "/api/jobs/{name}/archive",
            "archive a finished job (left out of lists unless asked for)",
            post(jobs::archive),
        )
        .at(
            "post",
            "/api/jobs/{name}/restore",
            "restore an archived job",
            post(jobs::restore),
        )
        .at("get", "/api/jobs/{name}", "show a job", get(jobs::show))
        .at(
            "post",
            "/api/jobs/{name}/cancel",
            "cancel a job",
            post(jobs::cancel),
        )
        .at(
            "get",
            "/api/jobs/{name}/metrics",
            "every point the job's MLflow run logged (?metric=NAME for one metric)",
            get(jobs::metrics),
        )
        .at(
            "get",
            "/api/jobs/{name}/logs",
            "the job's std_log.txt (?follow=true streams until the job ends, ?offset=N skips)",
            get(jobs::logs),
        )
        .at(
            "get",
            "/api/jobs/{name}/outputs/{output}/files",
            "list an output's files (`default`: the job's ./outputs and ./logs)",
            get(jobs::output_files),
        )
        .at(
            "get",
            "/api/jobs/{name}/outputs/{output}/files/{*path}",
            "one output file",
            get(jobs::output_file),
        )
}

/// Instance types, computes and datastores.
fn resource_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .at(
            "put",
            "/api/instance-types",
            "apply InstanceType documents (all or nothing)",
            put(resources::apply_instance_types),
        )
        .body("Apply")
        .at(
            "get",
            "/api/instance-types",
            "list instance types",
            get(resources::list_instance_types),
        )
        .at(
            "get",
            "/api/instance-types/{name}",
            "show an instance type",
            get(resources::show_instance_type),
        )
        .at(
            "delete",
            "/api/instance-types/{name}",
            "delete an instance type",
            axum::routing::delete(resources::delete_instance_type),
        )
        .at(
            "post",
            "/api/computes",
            "attach a compute",
            post(resources::attach_compute),
        )
        .body("Compute")
        .at(
            "get",
            "/api/computes",
            "list computes",
            get(resources::list_computes),
        )
        .at(
            "get",
            "/api/computes/{name}",
            "show a compute",
            get(resources::show_compute),
        )
        .at(
            "delete",
            "/api/computes/{name}",
            "detach a compute (?force=true cancels its jobs)",
            axum::routing::delete(resources::detach_compute),
        )
        .at(
            "post",
            "/api/datastores",
            "create a datastore",
            post(resources::create_datastore),
        )
        .body("Datastore")
        .at(
            "get",
            "/api/datastores",
            "list datastores",
            get(resources::list_datastores),
        )
        .at(
            "get",
            "/api/datastores/{name}",
            "show a datastore",
            get(resources::show_datastore),
        )
}

/// Versioned environments, components, models and data assets.
fn asset_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .at(
            "post",
            "/api/environments",
            "register an environment version (Azure's environment YAML)",
            post(assets::create_environment),
        )
        .body("JobCreate")
        .at(
            "get",
            "/api/environments",
            "list environments",
            get(assets::list_environments),
        )
        .at(
            "get",
            "/api/environments/{name}/versions/{version}",
            "show an environment version (`latest` for the newest)",
            get(assets::show_environment),
        )
        .at(
            "post",
            "/api/components",
            "register a component version (Azure's commandComponent or pipelineComponent YAML)",
            post(assets::create_component),
        )
        .body("JobCreate")
        .at(
            "get",
            "/api/components",
            "list components",
            get(assets::list_components),
        )
        .at(
            "get",
            "/api/components/{name}/versions/{version}",
            "show a component version (`latest` for the newest)",
            get(assets::show_component),
        )
        .at(
            "post",
            "/api/models",
            "register a model version (Azure's model YAML or flags)",
            post(assets::create_model),
        )
        .body("JobCreate")
        .at(
            "get",
            "/api/models",
            "list models",
            get(assets::list_models),
        )
        .at(
            "get",
            "/api/models/{name}/versions/{version}",
            "show a model version (`latest` for the newest)",
            get(assets::show_model),
        )
        .at(
            "post",
            "/api/data",
            "register a data asset version (uri_file, uri_folder)",
            post(assets::create_data),
        )
        .body("JobCreate")
        .at(
            "get",
            "/api/data",
            "list data assets",
            get(assets::list_data),
        )
        .at(
            "get",
            "/api/data/{name}/versions/{version}",
            "show a data asset version (`latest` for the newest)",
            get(assets::show_data),
        )
}

/// Online endpoints, their deployments, and the routes published to routers.
fn serving_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .merge(endpoint_routes())
        .merge(deployment_routes())
}

fn endpoint_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .at(
            "post",
            "/api/endpoints",
            "create an online endpoint (Azure's endpoint YAML)",
            post(sv::create_endpoint),
        )
        .body("EndpointCreate")
        .at(
            "get",
            "/api/endpoints",
            "list online endpoints",
            get(sv::list_endpoints),
        )
        .at(
            "get",
            "/api/endpoints/{name}",
            "show an online endpoint",
            get(sv::show_endpoint),
        )
        .at(
            "patch",
            "/api/endpoints/{name}",
            "update an endpoint: traffic, mirror traffic, description, tags",
            axum::routing::patch(sv::update_endpoint),
        )
        .body("EndpointUpdate")
        .at(
            "delete",
            "/api/endpoints/{name}",
            "delete an endpoint and its deployments",
            axum::routing::delete(sv::delete_endpoint),
        )
        .at(
            "post",
            "/api/endpoints/{name}/listKeys",
            "the endpoint's keys",
            post(sv::list_keys),
        )
        .at(
            "post",
            "/api/endpoints/{name}/token",
            "a signed token for an aml_token endpoint",
            post(sv::get_token),
        )
        .at(
            "post",
            "/api/endpoints/{name}/regenerateKeys",
            "regenerate the primary or secondary key",
            post(sv::regenerate_keys),
        )
        .body("Regenerate")
}

fn deployment_routes() -> Documented<AppState> {
    Documented::new(Access::Token)
        .at(
            "post",
            "/api/endpoints/{name}/deployments",
            "create an online deployment (Azure's deployment YAML)",
            post(sv::create_deployment),
        )
        .body("DeploymentCreate")
        .at(
            "get",
            "/api/endpoints/{name}/deployments",
            "list an endpoint's deployments",
            get(sv::list_deployments),
        )
        .at(
            "get",
            "/api/endpoints/{name}/deployments/{deployment}",
            "show a deployment",
            get(sv::show_deployment),
        )
        .at(
            "put",
            "/api/endpoints/{name}/deployments/{deployment}",
            "update a deployment (a new revision, rolled out)",
            put(sv::update_deployment),
        )
        .body("DeploymentCreate")
        .at(
            "delete",
            "/api/endpoints/{name}/deployments/{deployment}",
            "delete a deployment",
            axum::routing::delete(sv::delete_deployment),
        )
        .at(
            "get",
            "/api/endpoints/{name}/deployments/{deployment}/logs",
            "a deployment's replica or environment logs (?lines=N, ?container=...)",
            get(sv::deployment_logs),
        )
}
