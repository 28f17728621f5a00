//! What the charts draw: a run's metric histories as columns (`x` and `y`), sorted by `x`
//! (the step, or the time in seconds), behind the studio's session.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::session::Session;
use crate::AppState;

#[derive(Deserialize)]
pub struct MetricsQuery {
    run: String,
    keys: String,
    #[serde(default)]
    x: String,
}

/// The most points a chart draws of one metric: the newest, when there are more.
const MOST: i64 = 50_000;

/// `GET /studio/data/metrics?run=&keys=a,b&x=step|time`.
pub async fn metrics(
    State(s): State<AppState>,
    _session: Session,
    Query(q): Query<MetricsQuery>,
) -> Response {
    let mut series = Vec::new();
    for key in q.keys.split(',').filter(|k| !k.is_empty()).take(8) {
        let points = match s.store.metric_history(&q.run, key, 0, i64::MAX).await {
            Ok(p) => p,
            Err(e) => return super::failed(&e.to_string()),
        };
        let skip = points.len().saturating_sub(MOST as usize);
        let mut xy: Vec<(f64, Option<f64>)> = points[skip..]
            .iter()
            .map(|m| {
                let x = if q.x == "time" {
                    m.timestamp as f64 / 1000.0
                } else {
                    m.step as f64
                };
                (x, m.value.is_finite().then_some(m.value))
            })
            .collect();
        xy.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (x, y): (Vec<f64>, Vec<Option<f64>>) = xy.into_iter().unzip();
        series.push(json!({"key": key, "x": x, "y": y}));
    }
    Json(json!({"series": series})).into_response()
}
