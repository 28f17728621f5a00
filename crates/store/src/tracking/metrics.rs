//! Metric points: a batch's points in multi-row inserts, each key's latest value, histories
//! in logging order, pruning, and removing a run's records.

use std::collections::BTreeMap;

use super::{Metric, TrackingError, decode_value, encode_value};
use crate::Store;
use crate::dialect::Dialect;
use sqlx::AnyConnection;

impl Store {
    /// Whether run `run_id` has ever logged metric `key`.
    pub async fn has_metric(&self, run_id: &str, key: &str) -> Result<bool, TrackingError> {
        Ok(
            sqlx::query(self.sql("SELECT 1 FROM metric_series WHERE run_id = ? AND key = ?"))
                .bind(run_id)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Up to `limit` points of metric `key` of a run from the `offset`-th, in logging order.
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Metric>, TrackingError> {
        let series: Option<i64> = sqlx::query_scalar(
            self.sql("SELECT series_id FROM metric_series WHERE run_id = ? AND key = ?"),
        )
        .bind(run_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(series) = series else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, i64, Option<f64>)> = sqlx::query_as(self.sql(
            "SELECT step, timestamp, value FROM metric_points WHERE series_id = ? ORDER BY rowid LIMIT ? OFFSET ?",
        ))
        .bind(series)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(step, timestamp, value)| Metric {
                key: key.to_string(),
                value: decode_value(value),
                timestamp,
                step,
            })
            .collect())
    }

    /// Removes a run and everything it logged (a job that was never accepted).
    pub async fn purge_run(&self, run_id: &str) -> Result<(), TrackingError> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM metric_points WHERE series_id IN (SELECT series_id FROM metric_series WHERE run_id = ?)",
            "DELETE FROM metric_series WHERE run_id = ?",
            "DELETE FROM params WHERE run_id = ?",
            "DELETE FROM run_tags WHERE run_id = ?",
            "DELETE FROM runs WHERE run_id = ?",
        ] {
            sqlx::query(self.sql(sql))
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops the points of a run's metrics logged before `before_ms` (a bounded history for
    /// the runs Berth keeps itself: computes, endpoints). Returns how many went.
    pub async fn prune_points(&self, run_id: &str, before_ms: i64) -> Result<u64, TrackingError> {
        let done = sqlx::query(self.sql("DELETE FROM metric_points WHERE series_id IN (SELECT series_id FROM metric_series WHERE run_id = ?) AND timestamp < ?"))
        .bind(run_id)
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Whether `a` is later than `b` as MLflow picks a metric's latest value: by step, then
/// timestamp, then value (NaN lowest).
fn later(a: &Metric, b: &Metric) -> bool {
    let v = |m: &Metric| if m.value.is_nan() { f64::MIN } else { m.value };
    (a.step, a.timestamp)
        .cmp(&(b.step, b.timestamp))
        .then(v(a).total_cmp(&v(b)))
        .is_gt()
}

/// Appends the points of a batch: one upsert per metric key for its latest value, then the
/// points in multi-row inserts (a point is one row of four numbers).
pub(super) async fn log_points(
    d: Dialect,
    tx: &mut AnyConnection,
    run_id: &str,
    metrics: &[Metric],
) -> Result<(), sqlx::Error> {
    let mut keys: Vec<&str> = Vec::new();
    let mut latest: BTreeMap<&str, &Metric> = BTreeMap::new();
    for m in metrics {
        match latest.get(m.key.as_str()) {
            Some(cur) if !later(m, cur) => {}
            Some(_) => {
                latest.insert(&m.key, m);
            }
            None => {
                keys.push(&m.key);
                latest.insert(&m.key, m);
            }
        }
    }
    let mut series = BTreeMap::new();
    for key in keys {
        let m = latest[key];
        series.insert(key, upsert_series(d, tx, run_id, m).await?);
    }
    for chunk in metrics.chunks(500) {
        let sql = format!(
            "INSERT INTO metric_points (series_id, step, timestamp, value) VALUES {}",
            vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(d.sql(&sql));
        for m in chunk {
            q = q
                .bind(series[m.key.as_str()])
                .bind(m.step)
                .bind(m.timestamp)
                .bind(encode_value(m.value));
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The series of metric `m.key` of a run, made if new, its latest value moved to `m` when `m`
/// is later.
async fn upsert_series(
    d: Dialect,
    tx: &mut AnyConnection,
    run_id: &str,
    m: &Metric,
) -> Result<i64, sqlx::Error> {
    let moved: Option<i64> = sqlx::query_scalar(d.sql("INSERT INTO metric_series (run_id, key, step, timestamp, value) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, value = excluded.value
           WHERE (excluded.step, excluded.timestamp, COALESCE(excluded.value, -1e308))
               > (metric_series.step, metric_series.timestamp, COALESCE(metric_series.value, -1e308))
         RETURNING series_id"))
    .bind(run_id)
    .bind(&m.key)
    .bind(m.step)
    .bind(m.timestamp)
    .bind(encode_value(m.value))
    .fetch_optional(&mut *tx)
    .await?;
    // No row back: the stored latest is later, and stays.
    match moved {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar(
                d.sql("SELECT series_id FROM metric_series WHERE run_id = ? AND key = ?"),
            )
            .bind(run_id)
            .bind(&m.key)
            .fetch_one(&mut *tx)
            .await
        }
    }
}
