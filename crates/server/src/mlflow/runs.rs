//! `/api/2.0/mlflow/runs/*` and `metrics/get-history`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use berth_store::tracking::{Metric, NewRun, Run, RunInfo};
use serde_json::{Value, json};

use super::caller::Caller;
use super::error::MlflowError;
use super::experiments::stages;
use super::filter::{Filter, OrderBy, Subject};
use super::request::{Req, int_of, metric_value, pair};
use super::{now_ms, wire};
use crate::AppState;

/// The longest key of a metric, param or tag.
pub const MAX_KEY: usize = 250;
/// The longest param value MLflow keeps.
pub const MAX_PARAM_VALUE: usize = 6000;
/// The longest tag value MLflow keeps.
pub const MAX_TAG_VALUE: usize = 8000;

/// Refuses a key MLflow would refuse.
pub fn check_key(what: &str, key: &str) -> Result<(), MlflowError> {
    let ok_chars = key
        .chars()
        .all(|c| c.is_alphanumeric() || "_-./ :".contains(c));
    if key.is_empty() || key.len() > MAX_KEY || !ok_chars || key.split('/').any(|s| s == "..") {
        return Err(MlflowError::Invalid(format!(
            "{what} name `{}` is not valid: use 1 to {MAX_KEY} letters, digits, `_ - . / :` or spaces",
            key.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// Refuses a value over MLflow's limit for its kind.
pub fn check_value(what: &str, key: &str, value: &str, max: usize) -> Result<(), MlflowError> {
    if value.len() > max {
        return Err(MlflowError::Invalid(format!(
            "{what} `{key}` is {} bytes long; MLflow keeps at most {max} (log a large value as an artifact with mlflow.log_text)",
            value.len()
        )));
    }
    Ok(())
}

/// `max_results`, within MLflow's bounds.
pub fn page_size(req: &Req, default: i64, most: i64) -> Result<usize, MlflowError> {
    let n = req.int("max_results")?.unwrap_or(default);
    if !(1..=most).contains(&n) {
        return Err(MlflowError::Invalid(format!(
            "max_results is {n}; it must be between 1 and {most}"
        )));
    }
    Ok(n as usize)
}

/// Where a page starts: the `page_token` of the previous page.
pub fn page_offset(req: &Req) -> Result<usize, MlflowError> {
    match req.str("page_token").filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            MlflowError::Invalid(format!("page_token `{t}` is not one this server gave out"))
        }),
    }
}

/// The run a request names (`run_id`, or the older `run_uuid`), if the caller may touch it.
async fn named(s: &AppState, c: &Caller, req: &Req) -> Result<RunInfo, MlflowError> {
    let id = req
        .str("run_id")
        .or_else(|| req.str("run_uuid"))
        .filter(|i| !i.is_empty());
    let id = id.ok_or_else(|| {
        MlflowError::Invalid("Missing value for required parameter 'run_id'".into())
    })?;
    let info = s
        .store
        .run_info(id)
        .await?
        .ok_or_else(|| MlflowError::NotFound(format!("Run '{id}' not found")))?;
    c.may_touch(&info)?;
    Ok(info)
}

/// The run a write names: it must be active.
async fn writable(s: &AppState, c: &Caller, req: &Req) -> Result<RunInfo, MlflowError> {
    let info = named(s, c, req).await?;
    if info.lifecycle_stage != "active" {
        return Err(MlflowError::Invalid(format!(
            "The run {} must be in the 'active' state. Current state is {}.",
            info.run_id, info.lifecycle_stage
        )));
    }
    Ok(info)
}

fn random_id() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST runs/create`: a run in an experiment; a job's token makes it one of the job's.
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let exp = req
        .str("experiment_id")
        .filter(|e| !e.is_empty())
        .unwrap_or("0");
    let not_found = || MlflowError::NotFound(format!("Could not find experiment with ID {exp}"));
    let e = s
        .store
        .experiment(exp.parse().map_err(|_| not_found())?)
        .await?
        .ok_or_else(not_found)?;
    if e.lifecycle_stage != "active" {
        return Err(MlflowError::Invalid(format!(
            "experiment `{}` is deleted; restore it first",
            e.name
        )));
    }
    let mut tags = req.pairs("tags")?;
    checked_tags(&tags)?;
    let run_id = random_id();
    let run_name = req
        .str("run_name")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            tags.iter()
                .find(|(k, _)| k == "mlflow.runName")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| run_id[..8].to_string());
    if !tags.iter().any(|(k, _)| k == "mlflow.runName") {
        tags.push(("mlflow.runName".into(), run_name.clone()));
    }
    let new = NewRun {
        artifact_uri: format!("{}/{run_id}/artifacts", e.artifact_location),
        run_id,
        experiment_id: e.id,
        run_name,
        user_id: req.str("user_id").unwrap_or_default().to_string(),
        job_name: c.job().map(str::to_string),
        status: "RUNNING".into(),
        start_time: req.int("start_time")?.unwrap_or_else(now_ms),
        tags,
    };
    s.store.create_run(&new).await?;
    let run = s
        .store
        .run(&new.run_id)
        .await?
        .ok_or_else(|| MlflowError::Internal("the new run vanished".into()))?;
    Ok(Json(json!({"run": wire::run(&run)})))
}

async fn full(s: &AppState, info: &RunInfo) -> Result<Run, MlflowError> {
    s.store
        .run(&info.run_id)
        .await?
        .ok_or_else(|| MlflowError::NotFound(format!("Run '{}' not found", info.run_id)))
}

/// `GET runs/get`.
pub async fn get(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = named(&s, &c, &req).await?;
    Ok(Json(json!({"run": wire::run(&full(&s, &info).await?)})))
}

const STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

/// `POST runs/update`: status, end time, name.
pub async fn update(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let status = req.str("status").filter(|st| !st.is_empty());
    if let Some(st) = status.filter(|st| !STATUSES.contains(st)) {
        return Err(MlflowError::Invalid(format!(
            "status `{st}` is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let name = req.str("run_name").filter(|n| !n.is_empty());
    s.store
        .update_run(&info.run_id, status, req.int("end_time")?, name, None)
        .await?;
    let info = named(&s, &c, &req).await?;
    Ok(Json(json!({"run_info": wire::run_info(&info)})))
}

/// `POST runs/delete`.
pub async fn delete(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = named(&s, &c, &req).await?;
    s.store
        .update_run(&info.run_id, None, None, None, Some("deleted"))
        .await?;
    Ok(Json(json!({})))
}

/// `POST runs/restore`.
pub async fn restore(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = named(&s, &c, &req).await?;
    s.store
        .update_run(&info.run_id, None, None, None, Some("active"))
        .await?;
    Ok(Json(json!({})))
}

/// `POST runs/search`: the runs of some experiments, filtered, ordered and paged. A job's
/// token sees its job's runs only.
pub async fn search(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let experiments = req.ints("experiment_ids")?;
    let stages = stages(req.str("run_view_type"))?;
    let max = page_size(&req, 1000, 50_000)?;
    let offset = page_offset(&req)?;
    let filter = Filter::parse(req.str("filter").unwrap_or_default())?;
    let order = req
        .list("order_by")
        .iter()
        .filter_map(Value::as_str)
        .map(OrderBy::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = Vec::new();
    for info in s.store.run_infos(&experiments, stages, c.job()).await? {
        let run = full(&s, &info).await?;
        if filter.matches(&Subject::Run(&run)) {
            runs.push(run);
        }
    }
    runs.sort_by(|a, b| {
        order
            .iter()
            .map(|o| o.compare(a, b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| {
                b.info
                    .start_time
                    .cmp(&a.info.start_time)
                    .then(a.info.run_id.cmp(&b.info.run_id))
            })
    });
    Ok(Json(wire::page("runs", &runs, offset, max, wire::run)))
}

/// A metric of a request or of a batch entry.
fn metric_of(v: &Value) -> Result<Metric, MlflowError> {
    let key = v.get("key").and_then(Value::as_str).unwrap_or_default();
    check_key("metric", key)?;
    let int = |k: &str| {
        v.get(k).filter(|x| !x.is_null()).map(|x| {
            int_of(x).ok_or_else(|| {
                MlflowError::Invalid(format!("metric `{key}`: `{k}` must be an integer, not {x}"))
            })
        })
    };
    Ok(Metric {
        key: key.to_string(),
        value: metric_value(key, v.get("value"))?,
        timestamp: int("timestamp").transpose()?.unwrap_or_else(now_ms),
        step: int("step").transpose()?.unwrap_or(0),
    })
}

pub(super) fn checked_params(params: &[(String, String)]) -> Result<(), MlflowError> {
    for (k, v) in params {
        check_key("param", k)?;
        check_value("param", k, v, MAX_PARAM_VALUE)?;
    }
    Ok(())
}

pub(super) fn checked_tags(tags: &[(String, String)]) -> Result<(), MlflowError> {
    for (k, v) in tags {
        check_key("tag", k)?;
        check_value("tag", k, v, MAX_TAG_VALUE)?;
    }
    Ok(())
}

/// `POST runs/log-metric`.
pub async fn log_metric(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let m = metric_of(&Value::Object(req.0.clone()))?;
    s.store.log_batch(&info.run_id, &[m], &[], &[]).await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-parameter`.
pub async fn log_param(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let p = [pair(&Value::Object(req.0.clone()))?];
    checked_params(&p)?;
    s.store.log_batch(&info.run_id, &[], &p, &[]).await?;
    Ok(Json(json!({})))
}

/// `POST runs/set-tag`.
pub async fn set_tag(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let t = [pair(&Value::Object(req.0.clone()))?];
    checked_tags(&t)?;
    s.store.log_batch(&info.run_id, &[], &[], &t).await?;
    if t[0].0 == "mlflow.runName" {
        s.store
            .update_run(&info.run_id, None, None, Some(&t[0].1), None)
            .await?;
    }
    Ok(Json(json!({})))
}

/// `POST runs/delete-tag`.
pub async fn delete_tag(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let key = req.need("key")?;
    if !s.store.delete_run_tag(&info.run_id, key).await? {
        return Err(MlflowError::NotFound(format!(
            "No tag with name: {key} in run with id {}",
            info.run_id
        )));
    }
    Ok(Json(json!({})))
}

/// `POST runs/log-batch`: up to 1000 metrics, 100 params and 100 tags, all or nothing.
pub async fn log_batch(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let (m, p, t) = (req.list("metrics"), req.list("params"), req.list("tags"));
    if m.len() > 1000 || p.len() > 100 || t.len() > 100 || m.len() + p.len() + t.len() > 1000 {
        return Err(MlflowError::Invalid(format!(
            "a batch holds at most 1000 metrics, 100 params, 100 tags and 1000 in all; this one has {}, {} and {}",
            m.len(),
            p.len(),
            t.len()
        )));
    }
    let metrics = m.iter().map(metric_of).collect::<Result<Vec<_>, _>>()?;
    let params = p.iter().map(pair).collect::<Result<Vec<_>, _>>()?;
    let tags = t.iter().map(pair).collect::<Result<Vec<_>, _>>()?;
    checked_params(&params)?;
    checked_tags(&tags)?;
    s.store
        .log_batch(&info.run_id, &metrics, &params, &tags)
        .await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-inputs` and `runs/outputs`: datasets and model links are accepted for a
/// run the caller may touch, and not kept.
pub async fn log_inputs(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    writable(&s, &c, &req).await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-model`: the model's metadata appended to the run's
/// `mlflow.log-model.history` tag, as MLflow's own server keeps it.
pub async fn log_model(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Json<Value>, MlflowError> {
    let info = writable(&s, &c, &req).await?;
    let model: Value = serde_json::from_str(req.need("model_json")?)
        .map_err(|e| MlflowError::Invalid(format!("model_json is not JSON: {e}")))?;
    let run = full(&s, &info).await?;
    const KEY: &str = "mlflow.log-model.history";
    let mut history: Vec<Value> = run
        .tags
        .get(KEY)
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    history.push(model);
    let text = serde_json::to_string(&history).unwrap_or_default();
    s.store
        .log_batch(&info.run_id, &[], &[], &[(KEY.into(), text)])
        .await?;
    Ok(Json(json!({})))
}

/// `GET metrics/get-history`: every point of a metric, in the order logged; pages when
/// `max_results` is given.
pub async fn history(
    State(s): State<AppState>,
    c: Caller,
    req: Req,
) -> Result<Response, MlflowError> {
    let info = named(&s, &c, &req).await?;
    let key = req.need("metric_key")?;
    if !s.store.has_metric(&info.run_id, key).await? {
        let run = full(&s, &info).await?;
        let known: Vec<&str> = run.metrics.iter().map(|m| m.key.as_str()).collect();
        return Err(MlflowError::NotFound(format!(
            "run `{}` has no metric `{key}`; it has {}",
            info.run_id,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let offset = page_offset(&req)?;
    let max = match req.int("max_results")? {
        None => i64::MAX,
        Some(_) => page_size(&req, 25_000, 1_000_000)? as i64,
    };
    let points = s
        .store
        .metric_history(&info.run_id, key, offset as i64, max.saturating_add(1))
        .await?;
    let more = points.len() as i64 > max;
    let page = wire::History {
        metrics: points
            .iter()
            .take(max as usize)
            .map(|m| wire::Point {
                key: &m.key,
                value: wire::Num(m.value),
                timestamp: m.timestamp,
                step: m.step,
            })
            .collect(),
        next_page_token: more.then(|| (offset as i64 + max).to_string()),
    };
    Ok(Json(page).into_response())
}
