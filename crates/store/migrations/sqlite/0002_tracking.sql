-- MLflow tracking: experiments, runs (one per job, and any a client makes), their params,
-- tags and metric histories, and MLflow 3's logged models.
CREATE TABLE experiments (
    experiment_id     INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    artifact_location TEXT    NOT NULL,
    lifecycle_stage   TEXT    NOT NULL DEFAULT 'active',
    creation_time     INTEGER NOT NULL,
    last_update_time  INTEGER NOT NULL
);
INSERT INTO experiments VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', 0, 0);

CREATE TABLE experiment_tags (
    experiment_id INTEGER NOT NULL,
    key           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;

CREATE TABLE runs (
    run_id          TEXT    PRIMARY KEY,
    experiment_id   INTEGER NOT NULL,
    run_name        TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    -- The job this run is, or the job whose token made it; NULL for a client's own runs.
    job_name        TEXT,
    status          TEXT    NOT NULL,
    start_time      INTEGER NOT NULL,
    end_time        INTEGER,
    lifecycle_stage TEXT    NOT NULL DEFAULT 'active',
    artifact_uri    TEXT    NOT NULL
);
CREATE INDEX runs_experiment ON runs (experiment_id, start_time);
CREATE INDEX runs_job ON runs (job_name);

CREATE TABLE params (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE run_tags (
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

-- One row per (run, metric key), with its latest point; the points refer to it by number,
-- so a point costs four numbers and its history is one index range.
CREATE TABLE metric_series (
    series_id INTEGER PRIMARY KEY,
    run_id    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    step      INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    value     REAL,
    UNIQUE (run_id, key)
);

-- value NULL is NaN (SQLite stores no NaN).
CREATE TABLE metric_points (
    series_id INTEGER NOT NULL,
    step      INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    value     REAL
);
CREATE INDEX metric_points_series ON metric_points (series_id);

CREATE TABLE logged_models (
    model_id       TEXT    PRIMARY KEY,
    experiment_id  INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    source_run_id  TEXT,
    model_type     TEXT,
    status         TEXT    NOT NULL,
    artifact_uri   TEXT    NOT NULL,
    creation_time  INTEGER NOT NULL,
    last_update    INTEGER NOT NULL,
    tags           TEXT    NOT NULL DEFAULT '{}',
    params         TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX logged_models_experiment ON logged_models (experiment_id);
