//! MLflow 3's logged models (`/api/2.0/mlflow/logged-models`): what `log_model` and autolog
//! make. A job's token reaches the models its own runs made.

use axum::Json;
use axum::extract::{Path, State};
use berth_store::tracking::LoggedModel;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::MlflowError;
use super::request::{Req, int_of};
use super::{now_ms, wire};
use crate::AppState;

/// Refuses a job's token on a model none of its runs made.
pub async fn may_touch(s: &AppState, c: &Caller, m: &LoggedModel) -> Result<(), MlflowError> {
    if c.job().is_none() {
        return Ok(());
    }
    let run = match &m.source_run_id {
        Some(r) => s.store.run_info(r).await?,
        None => None,
    };
    match run {
        Some(info) => c.may_touch(&info),
        None => c.workspace_only(&format!(
            "touch logged model `{}`, which no run of the job made",
            m.model_id
        )),
    }
}

async fn stored(s: &AppState, c: &Caller, id: &str) -> Result<LoggedModel, MlflowError> {
    let m =
        s.store.logged_model(id).await?.ok_or_else(|| {
            MlflowError::NotFound(format!("Logged model with ID '{id}' not found"))
        })?;
    may_touch(s, c, &m).await?;
    Ok(m)
}

/// `POST logged-models`.
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let exp = req.need("experiment_id")?;
    let not_found = || MlflowError::NotFound(format!("Could not find experiment with ID {exp}"));
    let e = s
        .store
        .experiment(exp.parse().map_err(|_| not_found())?)
        .await?
        .ok_or_else(not_found)?;
    let model_id = format!(
        "m-{}",
        rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let now = now_ms();
    let m = LoggedModel {
        artifact_uri: format!("{}/models/{model_id}/artifacts", e.artifact_location),
        name: req
            .str("name")
            .filter(|n| !n.is_empty())
            .unwrap_or("model")
            .to_string(),
        model_id,
        experiment_id: e.id,
        source_run_id: req
            .str("source_run_id")
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        model_type: req.str("model_type").map(str::to_string),
        status: "LOGGED_MODEL_PENDING".into(),
        creation_time: now,
        last_update: now,
        tags: req.pairs("tags")?.into_iter().collect(),
        params: req.pairs("params")?.into_iter().collect(),
    };
    may_touch(&s, &c, &m).await?;
    s.store.create_logged_model(&m).await?;
    Ok(Json(json!({"model": wire::logged_model(&m)})))
}

/// `GET logged-models/{id}`.
pub async fn get(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, MlflowError> {
    Ok(Json(
        json!({"model": wire::logged_model(&stored(&s, &c, &id).await?)}),
    ))
}

/// `PATCH logged-models/{id}`: its final status.
pub async fn finalize(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let mut m = stored(&s, &c, &id).await?;
    let status = match req.0.get("status") {
        Some(Value::String(st)) => st.clone(),
        Some(v) => match int_of(v) {
            Some(2) => "LOGGED_MODEL_READY".into(),
            Some(3) => "LOGGED_MODEL_UPLOAD_FAILED".into(),
            _ => {
                return Err(MlflowError::Invalid(format!(
                    "status {v} is not a logged model status"
                )));
            }
        },
        None => {
            return Err(MlflowError::Invalid(
                "Missing value for required parameter 'status'".into(),
            ));
        }
    };
    m.status = status;
    m.last_update = now_ms();
    s.store.save_logged_model(&m).await?;
    Ok(Json(json!({"model": wire::logged_model(&m)})))
}

/// `PATCH logged-models/{id}/tags`.
pub async fn set_tags(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let mut m = stored(&s, &c, &id).await?;
    let tags = req.pairs("tags")?;
    super::runs::checked_tags(&tags)?;
    m.tags.extend(tags);
    m.last_update = now_ms();
    s.store.save_logged_model(&m).await?;
    Ok(Json(json!({"model": wire::logged_model(&m)})))
}

/// `POST logged-models/{id}/params`.
pub async fn log_params(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let mut m = stored(&s, &c, &id).await?;
    let params = req.pairs("params")?;
    super::runs::checked_params(&params)?;
    m.params.extend(params);
    m.last_update = now_ms();
    s.store.save_logged_model(&m).await?;
    Ok(Json(json!({})))
}

/// `DELETE logged-models/{id}`: the record; its files stay until the run's are removed.
pub async fn remove(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, MlflowError> {
    stored(&s, &c, &id).await?;
    s.store.delete_logged_model(&id).await?;
    Ok(Json(json!({})))
}

/// `POST logged-models/search`: the models of some experiments, newest first.
pub async fn search(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let experiments = req.ints("experiment_ids")?;
    let max = super::runs::page_size(&req, 100, 50_000)?;
    let offset = super::runs::page_offset(&req)?;
    let mut models = Vec::new();
    for m in s.store.logged_models(&experiments).await? {
        if may_touch(&s, &c, &m).await.is_ok() {
            models.push(m);
        }
    }
    Ok(Json(wire::page(
        "models",
        &models,
        offset,
        max,
        wire::logged_model,
    )))
}
