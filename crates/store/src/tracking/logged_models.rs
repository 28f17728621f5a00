//! MLflow 3's logged models: one row each, their tags and params as JSON.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{LoggedModel, TrackingError};
use crate::Store;

impl Store {
    /// Records a logged model.
    pub async fn create_logged_model(&self, m: &LoggedModel) -> Result<(), TrackingError> {
        sqlx::query(self.sql("INSERT INTO logged_models (model_id, experiment_id, name, source_run_id, model_type, status, artifact_uri, creation_time, last_update, tags, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(&m.model_id)
        .bind(m.experiment_id)
        .bind(&m.name)
        .bind(&m.source_run_id)
        .bind(&m.model_type)
        .bind(&m.status)
        .bind(&m.artifact_uri)
        .bind(m.creation_time)
        .bind(m.last_update)
        .bind(encode_map(&m.tags))
        .bind(encode_map(&m.params))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Logged model `model_id`.
    pub async fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModel>, TrackingError> {
        let row = sqlx::query(self.sql("SELECT * FROM logged_models WHERE model_id = ?"))
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(logged_model).transpose()?)
    }

    /// The logged models of `experiments`, newest first.
    pub async fn logged_models(
        &self,
        experiments: &[i64],
    ) -> Result<Vec<LoggedModel>, TrackingError> {
        let marks = vec!["?"; experiments.len().max(1)].join(", ");
        let sql = format!(
            "SELECT * FROM logged_models WHERE experiment_id IN ({marks}) ORDER BY creation_time DESC"
        );
        let mut q = sqlx::query(self.sql(&sql));
        for e in experiments {
            q = q.bind(*e);
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(logged_model).collect::<Result<_, _>>()?)
    }

    /// Writes a logged model's status, tags and params back.
    pub async fn save_logged_model(&self, m: &LoggedModel) -> Result<(), TrackingError> {
        sqlx::query(self.sql("UPDATE logged_models SET status = ?, tags = ?, params = ?, last_update = ? WHERE model_id = ?"))
        .bind(&m.status)
        .bind(encode_map(&m.tags))
        .bind(encode_map(&m.params))
        .bind(m.last_update)
        .bind(&m.model_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a logged model's record (its files are the caller's to remove).
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<bool, TrackingError> {
        let done = sqlx::query(self.sql("DELETE FROM logged_models WHERE model_id = ?"))
            .bind(model_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn encode_map(m: &BTreeMap<String, String>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
}

fn logged_model(row: &AnyRow) -> Result<LoggedModel, sqlx::Error> {
    let map = |col: &str| -> Result<BTreeMap<String, String>, sqlx::Error> {
        let text: String = row.try_get(col)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(LoggedModel {
        model_id: row.try_get("model_id")?,
        experiment_id: row.try_get("experiment_id")?,
        name: row.try_get("name")?,
        source_run_id: row.try_get("source_run_id")?,
        model_type: row.try_get("model_type")?,
        status: row.try_get("status")?,
        artifact_uri: row.try_get("artifact_uri")?,
        creation_time: row.try_get("creation_time")?,
        last_update: row.try_get("last_update")?,
        tags: map("tags")?,
        params: map("params")?,
    })
}
