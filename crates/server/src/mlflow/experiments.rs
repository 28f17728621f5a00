//! `/api/2.0/mlflow/experiments/*`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::MlflowError;
use super::filter::{Filter, Subject};
use super::request::Req;
use super::{now_ms, wire};
use crate::AppState;

/// `experiment_id` of a request, which must name a stored experiment.
async fn stored(s: &AppState, req: &Req) -> Result<berth_store::tracking::Experiment, MlflowError> {
    let id = req.need("experiment_id")?;
    let not_found = || MlflowError::NotFound(format!("Could not find experiment with ID {id}"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    s.store.experiment(n).await?.ok_or_else(not_found)
}

/// The lifecycle stages a `view_type` asks for.
pub fn stages(view: Option<&str>) -> Result<&'static [&'static str], MlflowError> {
    match view.unwrap_or("ACTIVE_ONLY") {
        "ACTIVE_ONLY" | "1" => Ok(&["active"]),
        "DELETED_ONLY" | "2" => Ok(&["deleted"]),
        "ALL" | "3" => Ok(&["active", "deleted"]),
        other => Err(MlflowError::Invalid(format!(
            "view type `{other}` is not one of ACTIVE_ONLY, DELETED_ONLY, ALL"
        ))),
    }
}

/// `POST experiments/create`.
pub async fn create(
    State(s): State<AppState>,
    _c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let name = req.need("name")?;
    if name.len() > 500 {
        return Err(MlflowError::Invalid(
            "an experiment name is at most 500 characters".into(),
        ));
    }
    let tags = req.pairs("tags")?;
    let id = s
        .store
        .create_experiment(
            name,
            req.str("artifact_location").filter(|l| !l.is_empty()),
            &tags,
            now_ms(),
        )
        .await?;
    Ok(Json(json!({"experiment_id": id.to_string()})))
}

/// `GET experiments/get`.
pub async fn get(
    State(s): State<AppState>,
    _c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let e = stored(&s, &req).await?;
    Ok(Json(json!({"experiment": wire::experiment(&e)})))
}

/// `GET experiments/get-by-name`.
pub async fn get_by_name(
    State(s): State<AppState>,
    _c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let name = req.need("experiment_name")?;
    let e = s.store.experiment_by_name(name).await?.ok_or_else(|| {
        MlflowError::NotFound(format!("Could not find experiment with name '{name}'"))
    })?;
    Ok(Json(json!({"experiment": wire::experiment(&e)})))
}

/// `POST experiments/search`: filter on `name` and tags, pages by offset.
pub async fn search(
    State(s): State<AppState>,
    _c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let stages = stages(req.str("view_type"))?;
    let max = super::runs::page_size(&req, 1000, 50_000)?;
    let offset = super::runs::page_offset(&req)?;
    let filter = Filter::parse(req.str("filter").unwrap_or_default())?;
    let all = s.store.experiments(stages, i64::MAX, 0).await?;
    let matching: Vec<_> = all
        .iter()
        .filter(|e| filter.matches(&Subject::Experiment(e)))
        .collect();
    let out = wire::page("experiments", &matching, offset, max, |e| {
        wire::experiment(e)
    });
    Ok(Json(out))
}

/// `POST experiments/update`: a new name.
pub async fn update(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    c.workspace_only("rename an experiment")?;
    let e = stored(&s, &req).await?;
    let name = req.need("new_name")?;
    s.store
        .update_experiment(e.id, Some(name), None, now_ms())
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/delete`.
pub async fn delete(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    c.workspace_only("delete an experiment")?;
    let e = stored(&s, &req).await?;
    if e.id == 0 {
        return Err(MlflowError::Invalid(
            "the Default experiment cannot be deleted".into(),
        ));
    }
    s.store
        .update_experiment(e.id, None, Some("deleted"), now_ms())
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/restore`.
pub async fn restore(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    c.workspace_only("restore an experiment")?;
    let e = stored(&s, &req).await?;
    s.store
        .update_experiment(e.id, None, Some("active"), now_ms())
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/set-experiment-tag`.
pub async fn set_tag(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    c.workspace_only("tag an experiment")?;
    let e = stored(&s, &req).await?;
    let key = req.need("key")?;
    super::runs::check_key("tag", key)?;
    let value = req.str("value").unwrap_or_default();
    super::runs::check_value("tag", key, value, super::runs::MAX_TAG_VALUE)?;
    s.store.set_experiment_tag(e.id, key, Some(value)).await?;
    Ok(Json(json!({})))
}

/// `POST experiments/delete-experiment-tag`.
pub async fn delete_tag(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    c.workspace_only("untag an experiment")?;
    let e = stored(&s, &req).await?;
    s.store
        .set_experiment_tag(e.id, req.need("key")?, None)
        .await?;
    Ok(Json(json!({})))
}
