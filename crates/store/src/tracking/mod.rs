//! MLflow tracking's records: experiments, runs, params, tags, metric histories and logged
//! models, in their own tables beside the resources (migration 0002). Times are milliseconds
//! since the epoch, as MLflow has them.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

mod logged_models;
mod metrics;

/// An experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// Its number (MLflow sends it as a string).
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Where its runs' artifacts go by default.
    pub artifact_location: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Created (ms).
    pub creation_time: i64,
    /// Last changed (ms).
    pub last_update_time: i64,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// What a run is, without its data.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    /// Its id (a job's run has the job's name).
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: i64,
    /// Display name.
    pub run_name: String,
    /// Who made it.
    pub user_id: String,
    /// The job it is, or whose token made it.
    pub job_name: Option<String>,
    /// The job's status when it is a job's run (it wins over `status`).
    pub job_status: Option<String>,
    /// MLflow status as last set: `RUNNING`, `SCHEDULED`, `FINISHED`, `FAILED`, `KILLED`.
    pub status: String,
    /// Started (ms).
    pub start_time: i64,
    /// Ended (ms).
    pub end_time: Option<i64>,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Where its artifacts are.
    pub artifact_uri: String,
}

/// One point of a metric. `value` may be NaN or infinite.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Name.
    pub key: String,
    /// Value.
    pub value: f64,
    /// When (ms).
    pub timestamp: i64,
    /// Step.
    pub step: i64,
}

/// A run with its latest metrics, params and tags.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// What it is.
    pub info: RunInfo,
    /// Latest value of each metric.
    pub metrics: Vec<Metric>,
    /// Params.
    pub params: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A run to make.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Its id.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: i64,
    /// Display name.
    pub run_name: String,
    /// Who made it.
    pub user_id: String,
    /// The job it belongs to.
    pub job_name: Option<String>,
    /// Status to start in.
    pub status: String,
    /// Started (ms).
    pub start_time: i64,
    /// Where its artifacts go.
    pub artifact_uri: String,
    /// Its first tags.
    pub tags: Vec<(String, String)>,
}

/// MLflow 3's logged model.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedModel {
    /// Its id.
    pub model_id: String,
    /// Its experiment.
    pub experiment_id: i64,
    /// Name.
    pub name: String,
    /// The run that made it.
    pub source_run_id: Option<String>,
    /// Free text (`Agent`, ...).
    pub model_type: Option<String>,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY`, `LOGGED_MODEL_UPLOAD_FAILED`.
    pub status: String,
    /// Where its files are.
    pub artifact_uri: String,
    /// Created (ms).
    pub creation_time: i64,
    /// Last changed (ms).
    pub last_update: i64,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Params.
    pub params: BTreeMap<String, String>,
}

/// What a tracking write can run into.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// No such experiment, run or model.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The write contradicts what is stored (a changed param, a deleted run).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TrackingError {
    fn from(e: sqlx::Error) -> Self {
        TrackingError::Store(StoreError::Database(e))
    }
}

/// The artifact root of experiment `id`'s runs, through the server's artifact proxy.
pub fn experiment_artifacts(id: i64) -> String {
    format!("mlflow-artifacts:/{id}")
}

pub(super) fn decode_value(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

pub(super) fn encode_value(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

const RUN_COLUMNS: &str = "r.run_id, r.experiment_id, r.run_name, r.user_id, r.job_name, j.status AS job_status, r.status, r.start_time, r.end_time, r.lifecycle_stage, r.artifact_uri";
const RUN_FROM: &str = "runs r LEFT JOIN resources j ON j.kind = 'job' AND j.name = r.job_name";

fn run_info(row: &AnyRow) -> Result<RunInfo, sqlx::Error> {
    Ok(RunInfo {
        run_id: row.try_get("run_id")?,
        experiment_id: row.try_get("experiment_id")?,
        run_name: row.try_get("run_name")?,
        user_id: row.try_get("user_id")?,
        job_name: row.try_get("job_name")?,
        job_status: row.try_get("job_status")?,
        status: row.try_get("status")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        lifecycle_stage: row.try_get("lifecycle_stage")?,
        artifact_uri: row.try_get("artifact_uri")?,
    })
}

fn pairs(rows: Vec<AnyRow>) -> Result<BTreeMap<String, String>, sqlx::Error> {
    rows.iter()
        .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
        .collect()
}

impl Store {
    /// Makes an experiment; its artifacts go to `artifact_location` or the proxy's default.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[(String, String)],
        now: i64,
    ) -> Result<i64, TrackingError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query_scalar(self.sql("INSERT INTO experiments (name, artifact_location, creation_time, last_update_time) VALUES (?, '', ?, ?) RETURNING experiment_id"))
        .bind(name)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match res {
            Ok(id) => id,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(TrackingError::AlreadyExists(format!(
                    "an experiment named `{name}` already exists"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let location = artifact_location
            .map(str::to_string)
            .unwrap_or_else(|| experiment_artifacts(id));
        sqlx::query(
            self.sql("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?"),
        )
        .bind(location)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for (k, v) in tags {
            sqlx::query(self.sql("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value"))
                .bind(id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The experiment named `name`, made if there is none (a job's experiment).
    pub async fn ensure_experiment(&self, name: &str, now: i64) -> Result<i64, TrackingError> {
        if let Some(e) = self.experiment_by_name(name).await? {
            return Ok(e.id);
        }
        match self.create_experiment(name, None, &[], now).await {
            Err(TrackingError::AlreadyExists(_)) => self
                .experiment_by_name(name)
                .await?
                .map(|e| e.id)
                .ok_or_else(|| TrackingError::NotFound(format!("experiment `{name}`"))),
            other => other,
        }
    }

    async fn experiment_where(
        &self,
        clause: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<Experiment>, TrackingError> {
        let sql = format!(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM experiments {clause}"
        );
        let rows = bind(sqlx::query(self.sql(&sql)))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("experiment_id")?;
            let tags = sqlx::query(
                self.sql("SELECT key, value FROM experiment_tags WHERE experiment_id = ?"),
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            out.push(Experiment {
                id,
                name: row.try_get("name")?,
                artifact_location: row.try_get("artifact_location")?,
                lifecycle_stage: row.try_get("lifecycle_stage")?,
                creation_time: row.try_get("creation_time")?,
                last_update_time: row.try_get("last_update_time")?,
                tags: pairs(tags)?,
            });
        }
        Ok(out)
    }

    /// Experiment number `id`.
    pub async fn experiment(&self, id: i64) -> Result<Option<Experiment>, TrackingError> {
        Ok(self
            .experiment_where("WHERE experiment_id = ?", |q| q.bind(id))
            .await?
            .pop())
    }

    /// The experiment named `name`.
    pub async fn experiment_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Experiment>, TrackingError> {
        Ok(self
            .experiment_where("WHERE name = ?", |q| q.bind(name))
            .await?
            .pop())
    }

    /// A page of experiments in `stages`, newest first.
    pub async fn experiments(
        &self,
        stages: &[&str],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Experiment>, TrackingError> {
        let marks = vec!["?"; stages.len().max(1)].join(", ");
        let clause = format!(
            "WHERE lifecycle_stage IN ({marks}) ORDER BY creation_time DESC, experiment_id DESC LIMIT ? OFFSET ?"
        );
        self.experiment_where(&clause, |mut q| {
            for s in stages {
                q = q.bind(*s);
            }
            q.bind(limit).bind(offset)
        })
        .await
    }

    /// Renames, deletes or restores an experiment.
    pub async fn update_experiment(
        &self,
        id: i64,
        name: Option<&str>,
        stage: Option<&str>,
        now: i64,
    ) -> Result<(), TrackingError> {
        let res = sqlx::query(self.sql("UPDATE experiments SET name = COALESCE(?, name), lifecycle_stage = COALESCE(?, lifecycle_stage), last_update_time = ? WHERE experiment_id = ?"))
        .bind(name)
        .bind(stage)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await;
        match res {
            Ok(done) if done.rows_affected() == 0 => Err(TrackingError::NotFound(format!(
                "no experiment has the id {id}"
            ))),
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(TrackingError::AlreadyExists(format!(
                    "an experiment named `{}` already exists",
                    name.unwrap_or_default()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets (or with `None` removes) a tag of an experiment.
    pub async fn set_experiment_tag(
        &self,
        id: i64,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), TrackingError> {
        if self.experiment(id).await?.is_none() {
            return Err(TrackingError::NotFound(format!(
                "no experiment has the id {id}"
            )));
        }
        match value {
            Some(v) => sqlx::query(self.sql("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value"))
                .bind(id)
                .bind(key)
                .bind(v),
            None => sqlx::query(self.sql("DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?"))
                .bind(id)
                .bind(key),
        }
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a run; fails if the id is taken.
    pub async fn create_run(&self, run: &NewRun) -> Result<(), TrackingError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query(self.sql("INSERT INTO runs (run_id, experiment_id, run_name, user_id, job_name, status, start_time, artifact_uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(&run.run_id)
        .bind(run.experiment_id)
        .bind(&run.run_name)
        .bind(&run.user_id)
        .bind(&run.job_name)
        .bind(&run.status)
        .bind(run.start_time)
        .bind(&run.artifact_uri)
        .execute(&mut *tx)
        .await;
        match res {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(TrackingError::AlreadyExists(format!(
                    "a run with the id `{}` already exists",
                    run.run_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
        for (k, v) in &run.tags {
            sqlx::query(self.sql("INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"))
                .bind(&run.run_id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What run `run_id` is.
    pub async fn run_info(&self, run_id: &str) -> Result<Option<RunInfo>, TrackingError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.run_id = ?");
        let row = sqlx::query(self.sql(&sql))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(run_info).transpose()?)
    }

    /// Run `run_id` with its latest metrics, params and tags.
    pub async fn run(&self, run_id: &str) -> Result<Option<Run>, TrackingError> {
        let Some(info) = self.run_info(run_id).await? else {
            return Ok(None);
        };
        let metrics = sqlx::query(self.sql(
            "SELECT key, value, timestamp, step FROM metric_series WHERE run_id = ? ORDER BY key",
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Metric {
                key: r.try_get("key")?,
                value: decode_value(r.try_get("value")?),
                timestamp: r.try_get("timestamp")?,
                step: r.try_get("step")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let params = sqlx::query(self.sql("SELECT key, value FROM params WHERE run_id = ?"))
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        let tags = sqlx::query(self.sql("SELECT key, value FROM run_tags WHERE run_id = ?"))
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(Run {
            info,
            metrics,
            params: pairs(params)?,
            tags: pairs(tags)?,
        }))
    }

    /// The runs of `experiments` in `stages` (of one job's, when `job` is given), newest first.
    pub async fn run_infos(
        &self,
        experiments: &[i64],
        stages: &[&str],
        job: Option<&str>,
    ) -> Result<Vec<RunInfo>, TrackingError> {
        let exp = vec!["?"; experiments.len().max(1)].join(", ");
        let st = vec!["?"; stages.len().max(1)].join(", ");
        let job_clause = if job.is_some() {
            "AND r.job_name = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM {RUN_FROM} WHERE r.experiment_id IN ({exp}) AND r.lifecycle_stage IN ({st}) {job_clause} ORDER BY r.start_time DESC, r.run_id"
        );
        let mut q = sqlx::query(self.sql(&sql));
        for e in experiments {
            q = q.bind(*e);
        }
        for s in stages {
            q = q.bind(*s);
        }
        if let Some(j) = job {
            q = q.bind(j);
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(run_info).collect::<Result<_, _>>()?)
    }

    /// Changes a run's status, end time, name or lifecycle stage.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        run_name: Option<&str>,
        stage: Option<&str>,
    ) -> Result<(), TrackingError> {
        let done = sqlx::query(self.sql("UPDATE runs SET status = COALESCE(?, status), end_time = COALESCE(?, end_time), run_name = COALESCE(?, run_name), lifecycle_stage = COALESCE(?, lifecycle_stage) WHERE run_id = ?"))
        .bind(status)
        .bind(end_time)
        .bind(run_name)
        .bind(stage)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(TrackingError::NotFound(format!(
                "no run has the id `{run_id}`"
            )));
        }
        if let Some(name) = run_name {
            sqlx::query(self.sql("INSERT INTO run_tags (run_id, key, value) VALUES (?, 'mlflow.runName', ?) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"))
                .bind(run_id)
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Records metrics, params and tags of a run in one transaction: all or nothing. A param
    /// already logged with another value is refused, as MLflow does.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), TrackingError> {
        let mut tx = self.write_tx().await?;
        for (k, v) in params {
            let old: Option<String> = sqlx::query_scalar(
                self.sql("SELECT value FROM params WHERE run_id = ? AND key = ?"),
            )
            .bind(run_id)
            .bind(k)
            .fetch_optional(&mut *tx)
            .await?;
            match old {
                Some(old) if old != *v => {
                    return Err(TrackingError::Invalid(format!(
                        "param `{k}` of run `{run_id}` is already `{old}`; params cannot change (log `{v}` under another key, or start another run)"
                    )));
                }
                Some(_) => {}
                None => {
                    sqlx::query(self.sql("INSERT INTO params VALUES (?, ?, ?)"))
                        .bind(run_id)
                        .bind(k)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for (k, v) in tags {
            sqlx::query(self.sql("INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"))
                .bind(run_id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        metrics::log_points(self.dialect(), &mut tx, run_id, metrics).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a tag of a run.
    pub async fn delete_run_tag(&self, run_id: &str, key: &str) -> Result<bool, TrackingError> {
        let done = sqlx::query(self.sql("DELETE FROM run_tags WHERE run_id = ? AND key = ?"))
            .bind(run_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
