//! The MLflow tracking API (`/api/2.0/mlflow/...` and the artifact proxy
//! `/api/2.0/mlflow-artifacts/...`), so the unmodified `mlflow` client logs to Berth. Each job
//! is one run (its name is the run id); a job's command holds a token that opens its own runs
//! and nothing else, and the API token opens everything.

mod artifacts;
mod caller;
mod error;
mod experiments;
mod filter;
pub mod jobs;
mod logged_models;
mod request;
mod runs;
mod wire;

use axum::routing::{delete, get, patch, post, put};

pub use caller::Caller;
pub use error::MlflowError;

use crate::AppState;
use crate::api::documented::{Access, Documented};

/// The JSON routes, under the server's body limit.
pub fn routes() -> Documented<AppState> {
    experiment_routes()
        .merge(run_routes())
        .merge(logging_routes())
        .merge(logged_model_routes())
        .merge(Documented::new(Access::TrackingToken).at(
            "get",
            "/api/2.0/mlflow-artifacts/artifacts",
            "MLflow: list artifacts (?path=)",
            get(artifacts::list),
        ))
}

/// Experiments: create, read, search, rename, delete, tags.
fn experiment_routes() -> Documented<AppState> {
    Documented::new(Access::TrackingToken)
        .at(
            "post",
            "/api/2.0/mlflow/experiments/create",
            "MLflow: create an experiment",
            post(experiments::create),
        )
        .at(
            "get",
            "/api/2.0/mlflow/experiments/get",
            "MLflow: an experiment by id",
            get(experiments::get),
        )
        .at(
            "get",
            "/api/2.0/mlflow/experiments/get-by-name",
            "MLflow: an experiment by name",
            get(experiments::get_by_name),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/search",
            "MLflow: search experiments",
            post(experiments::search),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/update",
            "MLflow: rename an experiment",
            post(experiments::update),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/delete",
            "MLflow: delete an experiment",
            post(experiments::delete),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/restore",
            "MLflow: restore an experiment",
            post(experiments::restore),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/set-experiment-tag",
            "MLflow: tag an experiment",
            post(experiments::set_tag),
        )
        .at(
            "post",
            "/api/2.0/mlflow/experiments/delete-experiment-tag",
            "MLflow: untag an experiment",
            post(experiments::delete_tag),
        )
}

/// Runs: create, read, update, delete, restore, search.
fn run_routes() -> Documented<AppState> {
    Documented::new(Access::TrackingToken)
        .at(
            "post",
            "/api/2.0/mlflow/runs/create",
            "MLflow: create a run",
            post(runs::create),
        )
        .at(
            "get",
            "/api/2.0/mlflow/runs/get",
            "MLflow: a run with its data",
            get(runs::get),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/update",
            "MLflow: a run's status, end time or name",
            post(runs::update),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/delete",
            "MLflow: delete a run",
            post(runs::delete),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/restore",
            "MLflow: restore a run",
            post(runs::restore),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/search",
            "MLflow: search runs (filter, order_by, pages)",
            post(runs::search),
        )
}

/// What a run logs: metrics, params, tags, batches, inputs, models; metric histories.
fn logging_routes() -> Documented<AppState> {
    Documented::new(Access::TrackingToken)
        .at(
            "post",
            "/api/2.0/mlflow/runs/log-metric",
            "MLflow: log a metric",
            post(runs::log_metric),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/log-parameter",
            "MLflow: log a param",
            post(runs::log_param),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/set-tag",
            "MLflow: set a run tag",
            post(runs::set_tag),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/delete-tag",
            "MLflow: remove a run tag",
            post(runs::delete_tag),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/log-batch",
            "MLflow: log metrics, params and tags at once",
            post(runs::log_batch),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/log-inputs",
            "MLflow: a run's datasets (accepted)",
            post(runs::log_inputs),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/outputs",
            "MLflow: a run's logged models (accepted)",
            post(runs::log_inputs),
        )
        .at(
            "post",
            "/api/2.0/mlflow/runs/log-model",
            "MLflow: a run's model metadata, as the mlflow.log-model.history tag",
            post(runs::log_model),
        )
        .at(
            "get",
            "/api/2.0/mlflow/metrics/get-history",
            "MLflow: every point of a metric",
            get(runs::history),
        )
}

/// MLflow 3's logged models.
fn logged_model_routes() -> Documented<AppState> {
    Documented::new(Access::TrackingToken)
        .at(
            "post",
            "/api/2.0/mlflow/logged-models",
            "MLflow 3: create a logged model",
            post(logged_models::create),
        )
        .at(
            "post",
            "/api/2.0/mlflow/logged-models/search",
            "MLflow 3: search logged models",
            post(logged_models::search),
        )
        .at(
            "get",
            "/api/2.0/mlflow/logged-models/{model_id}",
            "MLflow 3: a logged model",
            get(logged_models::get),
        )
        .at(
            "patch",
            "/api/2.0/mlflow/logged-models/{model_id}",
            "MLflow 3: finalize a logged model",
            patch(logged_models::finalize),
        )
        .at(
            "delete",
            "/api/2.0/mlflow/logged-models/{model_id}",
            "MLflow 3: delete a logged model",
            delete(logged_models::remove),
        )
        .at(
            "patch",
            "/api/2.0/mlflow/logged-models/{model_id}/tags",
            "MLflow 3: tag a logged model",
            patch(logged_models::set_tags),
        )
        .at(
            "post",
            "/api/2.0/mlflow/logged-models/{model_id}/params",
            "MLflow 3: params of a logged model",
            post(logged_models::log_params),
        )
}

/// The artifact routes: uploads are streamed to disk with no body limit.
pub fn artifact_routes() -> Documented<AppState> {
    Documented::new(Access::TrackingToken)
        .at(
            "get",
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            "MLflow: download an artifact",
            get(artifacts::download),
        )
        .at(
            "put",
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            "MLflow: upload an artifact (streamed)",
            put(artifacts::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// Milliseconds since the epoch, as MLflow counts time.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
