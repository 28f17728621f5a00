//! Berth's durable state: every resource as a versioned JSON row, in SQLite (one file under
//! `$BERTH_HOME`, WAL, synced on commit; the embedded default) or in PostgreSQL
//! (`--store postgres://...`), so that what the API accepted survives a crash. The same
//! queries run on both, through sqlx's `Any` driver; [`dialect`] holds what differs.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use sqlx::{AnyConnection, AnyPool};

mod connect;
pub mod dialect;
pub mod lease;
pub mod listing;
pub mod page;
#[cfg(test)]
mod testing;
pub mod tracking;

/// Which table of resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Instance types.
    InstanceType,
    /// Computes.
    Compute,
    /// Datastores.
    Datastore,
    /// Jobs.
    Job,
    /// Model versions (`name:version`).
    Model,
    /// Online endpoints.
    Endpoint,
    /// Online deployments (`endpoint/deployment`).
    Deployment,
    /// Environment versions (`name:version`).
    Environment,
    /// Data asset versions (`name:version`).
    Data,
    /// Component versions (`name:version`).
    Component,
    /// Pipeline steps that may be reused, by reuse key.
    StepReuse,
}

impl Kind {
    /// The kind as a person says it.
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::InstanceType => "instance type",
            Kind::Compute => "compute",
            Kind::Datastore => "datastore",
            Kind::Job => "job",
            Kind::Model => "model version",
            Kind::Endpoint => "online endpoint",
            Kind::Deployment => "online deployment",
            Kind::Environment => "environment version",
            Kind::Data => "data asset version",
            Kind::Component => "component version",
            Kind::StepReuse => "reusable step",
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Kind::InstanceType => "instance_type",
            Kind::Compute => "compute",
            Kind::Datastore => "datastore",
            Kind::Job => "job",
            Kind::Model => "model",
            Kind::Endpoint => "endpoint",
            Kind::Deployment => "deployment",
            Kind::Environment => "environment",
            Kind::Data => "data",
            Kind::Component => "component",
            Kind::StepReuse => "step_reuse",
        }
    }
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A resource with this name exists.
    #[error("{kind:?} `{name}` already exists")]
    AlreadyExists {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
    /// No resource with this name.
    #[error("{kind:?} `{name}` does not exist")]
    NotFound {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
    /// Someone else changed the resource since it was read.
    #[error(
        "{kind:?} `{name}` changed since it was read (expected version {expected}); read it again and retry"
    )]
    Conflict {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The version the caller had.
        expected: i64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database's schema is newer than this Berth's.
    #[error(
        "the database was migrated by a newer Berth: its schema is at version {found}, this Berth knows versions up to {known}; run the newer Berth, or point --store at another database"
    )]
    NewerSchema {
        /// The newest migration the database has.
        found: i64,
        /// The newest migration this Berth has.
        known: i64,
    },
    /// The database could not be reached or refused the connection.
    #[error(
        "cannot connect to the store at {url}: {reason}; check that PostgreSQL runs there and that the user, password and database in the URL are right"
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the database or the network said.
        reason: String,
    },
    /// The store URL is not one Berth can use.
    #[error(
        "`{0}` is not a store URL: give postgres://user[:password]@host[:port]/database, or sqlite:///path/to/berth.db"
    )]
    BadUrl(String),
    /// A stored body no longer parses (written by an incompatible version).
    #[error("stored {kind:?} `{name}` is unreadable: {source}")]
    Corrupt {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A body could not be encoded.
    #[error("cannot encode resource: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A resource read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<T> {
    /// The resource.
    pub value: T,
    /// Its version.
    pub resource_version: i64,
    /// Insertion order (FIFO order for jobs).
    pub seq: i64,
}

/// The store: a pool of database connections, and a feed of which kinds changed.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: dialect::Dialect,
    changes: std::sync::Arc<Changes>,
}

/// One counter per kind, bumped after each committed write of that kind.
#[derive(Debug)]
struct Changes([tokio::sync::watch::Sender<u64>; KINDS]);

/// How many kinds there are.
const KINDS: usize = 11;

impl Default for Changes {
    fn default() -> Self {
        Changes(std::array::from_fn(|_| tokio::sync::watch::Sender::new(0)))
    }
}

impl Kind {
    const fn index(self) -> usize {
        match self {
            Kind::InstanceType => 0,
            Kind::Compute => 1,
            Kind::Datastore => 2,
            Kind::Job => 3,
            Kind::Model => 4,
            Kind::Endpoint => 5,
            Kind::Deployment => 6,
            Kind::Environment => 7,
            Kind::Data => 8,
            Kind::Component => 9,
            Kind::StepReuse => 10,
        }
    }
}

/// Stores one new resource: kind, name, status, body, created and updated times.
const INSERT: &str = "INSERT INTO resources (kind, name, status, body, resource_version, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?) RETURNING seq";

/// Inserts or replaces a resource: kind, name, body, created and updated times.
const UPSERT: &str = "INSERT INTO resources (kind, name, status, body, resource_version, created_at, updated_at) VALUES (?, ?, NULL, ?, 1, ?, ?)
    ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, resource_version = resources.resource_version + 1, updated_at = excluded.updated_at
    RETURNING resource_version";

/// An insert's error: a taken name is `AlreadyExists`.
fn inserted(e: sqlx::Error, kind: Kind, name: &str) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::AlreadyExists {
            kind,
            name: name.to_string(),
        },
        e => e.into(),
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Which database this store is on.
    pub fn dialect(&self) -> dialect::Dialect {
        self.dialect
    }

    /// `sql` written for this store's database.
    fn sql(&self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        self.dialect.sql(sql)
    }

    /// Inserts a new resource; fails with `AlreadyExists` if the name is taken. Returns its
    /// version (1) and its insertion order.
    pub async fn insert<T: Serialize>(
        &self,
        kind: Kind,
        name: &str,
        status: Option<&str>,
        value: &T,
    ) -> Result<(i64, i64), StoreError> {
        let body = serde_json::to_string(value).map_err(StoreError::Encode)?;
        let t = now();
        let res = sqlx::query(self.sql(INSERT))
            .bind(kind.as_str())
            .bind(name)
            .bind(status)
            .bind(body)
            .bind(&t)
            .bind(&t)
            .fetch_one(&self.pool)
            .await;
        match res {
            Ok(row) => {
                self.changed(kind);
                Ok((1, row.get(0)))
            }
            Err(e) => Err(inserted(e, kind, name)),
        }
    }

    /// Inserts many resources in one transaction (an import, or a bench's history): all or
    /// none. `items` are `(name, status, body)`.
    pub async fn insert_many<T: Serialize>(
        &self,
        kind: Kind,
        items: &[(String, Option<String>, T)],
    ) -> Result<(), StoreError> {
        let t = now();
        let mut tx = self.write_tx().await?;
        for (name, status, value) in items {
            let body = serde_json::to_string(value).map_err(StoreError::Encode)?;
            let res = sqlx::query(self.sql(INSERT))
                .bind(kind.as_str())
                .bind(name)
                .bind(status)
                .bind(body)
                .bind(&t)
                .bind(&t)
                .execute(&mut *tx)
                .await;
            res.map_err(|e| inserted(e, kind, name))?;
        }
        tx.commit().await?;
        self.changed(kind);
        Ok(())
    }

    /// Inserts or replaces a resource; returns its new version.
    pub async fn upsert<T: Serialize>(
        &self,
        kind: Kind,
        name: &str,
        value: &T,
    ) -> Result<i64, StoreError> {
        let body = serde_json::to_string(value).map_err(StoreError::Encode)?;
        let t = now();
        let row = sqlx::query(self.sql(UPSERT))
            .bind(kind.as_str())
            .bind(name)
            .bind(body)
            .bind(&t)
            .bind(&t)
            .fetch_one(&self.pool)
            .await?;
        self.changed(kind);
        Ok(row.get(0))
    }

    /// Replaces a resource if its version is still `expected`; returns the new version.
    pub async fn update<T: Serialize>(
        &self,
        kind: Kind,
        name: &str,
        expected: i64,
        status: Option<&str>,
        value: &T,
    ) -> Result<i64, StoreError> {
        let body = serde_json::to_string(value).map_err(StoreError::Encode)?;
        let row = sqlx::query(self.sql(
            "UPDATE resources SET body = ?, status = ?, resource_version = resource_version + 1, updated_at = ?
             WHERE kind = ? AND name = ? AND resource_version = ? RETURNING resource_version",
        ))
        .bind(body)
        .bind(status)
        .bind(now())
        .bind(kind.as_str())
        .bind(name)
        .bind(expected)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                self.changed(kind);
                Ok(r.get(0))
            }
            None => {
                let exists = self.version(kind, name).await?.is_some();
                Err(if exists {
                    StoreError::Conflict {
                        kind,
                        name: name.to_string(),
                        expected,
                    }
                } else {
                    StoreError::NotFound {
                        kind,
                        name: name.to_string(),
                    }
                })
            }
        }
    }

    async fn version(&self, kind: Kind, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            self.sql("SELECT resource_version FROM resources WHERE kind = ? AND name = ?"),
        )
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Reads one resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Stored<T>>, StoreError> {
        let row =
            sqlx::query(self.sql(
                "SELECT body, resource_version, seq FROM resources WHERE kind = ? AND name = ?",
            ))
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(kind, name, &r)).transpose()
    }

    /// The names of every resource of a kind, without reading the resources.
    pub async fn names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(self.sql("SELECT name FROM resources WHERE kind = ?"))
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Which of `names` exist as resources of `kind` (one query; give a few hundred at most).
    pub async fn existing(
        &self,
        kind: Kind,
        names: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT name FROM resources WHERE kind = ? AND name IN ({})",
            vec!["?"; names.len()].join(", ")
        );
        let mut q = sqlx::query(self.sql(&sql)).bind(kind.as_str());
        for n in names {
            q = q.bind(n);
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// The names of `kind`'s resources whose status is not `status`.
    pub async fn names_except(&self, kind: Kind, status: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query(self.sql(
                "SELECT name FROM resources WHERE kind = ? AND (status IS NULL OR status != ?)",
            ))
            .bind(kind.as_str())
            .bind(status)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Reads every resource of a kind, oldest first.
    pub async fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
    ) -> Result<Vec<Stored<T>>, StoreError> {
        let rows = sqlx::query(self.sql(
            "SELECT body, resource_version, seq, name FROM resources WHERE kind = ? ORDER BY seq",
        ))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| decode(kind, r.get::<&str, _>(3), r))
            .collect()
    }

    /// Reads the resources of a kind whose status is one of `statuses`, oldest first.
    pub async fn list_with_status<T: DeserializeOwned>(
        &self,
        kind: Kind,
        statuses: &[&str],
    ) -> Result<Vec<Stored<T>>, StoreError> {
        let mut out = Vec::new();
        for status in statuses {
            let rows = sqlx::query(self.sql("SELECT body, resource_version, seq, name FROM resources WHERE kind = ? AND status = ? ORDER BY seq"))
                .bind(kind.as_str())
                .bind(status)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                out.push(decode(kind, r.get::<&str, _>(3), r)?);
            }
        }
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    /// Counts the resources of a kind whose status is one of `statuses` and whose body's
    /// top-level `field` equals `value`.
    pub async fn count_where(
        &self,
        kind: Kind,
        statuses: &[&str],
        field: &str,
        value: &str,
    ) -> Result<i64, StoreError> {
        assert!(
            !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "not a field name: {field}"
        );
        let sql = format!(
            "SELECT COUNT(*) FROM resources WHERE kind = ? AND status = ? AND {} = ?",
            self.dialect.field(field)
        );
        let mut n = 0;
        for status in statuses {
            let row = sqlx::query(self.sql(&sql))
                .bind(kind.as_str())
                .bind(status)
                .bind(value)
                .fetch_one(&self.pool)
                .await?;
            n += row.get::<i64, _>(0);
        }
        Ok(n)
    }

    /// Deletes a resource; returns whether it existed.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let res = sqlx::query(self.sql("DELETE FROM resources WHERE kind = ? AND name = ?"))
            .bind(kind.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.changed(kind);
        Ok(res.rows_affected() > 0)
    }

    /// Counts a committed write of `kind` (made here, or in a transaction from [`Store::begin`]).
    pub fn changed(&self, kind: Kind) {
        self.changes.0[kind.index()].send_modify(|n| *n += 1);
    }

    /// How many writes of `kind` this store has seen; the receiver wakes after each.
    pub fn watch(&self, kind: Kind) -> tokio::sync::watch::Receiver<u64> {
        self.changes.0[kind.index()].subscribe()
    }

    /// Runs `f` inside one transaction (for several writes that must land together).
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        Ok(self.write_tx().await?)
    }

    /// A write transaction. On SQLite it holds the write lock from its start
    /// (`BEGIN IMMEDIATE`): one that reads and then writes would otherwise fail at once
    /// (`SQLITE_BUSY`, which the busy timeout does not wait out) when another connection wrote
    /// in between.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        match self.dialect {
            dialect::Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            dialect::Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// Upserts inside a transaction.
    pub async fn upsert_in<T: Serialize>(
        &self,
        conn: &mut AnyConnection,
        kind: Kind,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(value).map_err(StoreError::Encode)?;
        let t = now();
        sqlx::query(self.sql(UPSERT))
            .bind(kind.as_str())
            .bind(name)
            .bind(body)
            .bind(&t)
            .bind(&t)
            .execute(conn)
            .await?;
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(
    kind: Kind,
    name: &str,
    r: &AnyRow,
) -> Result<Stored<T>, StoreError> {
    let body: &str = r.get(0);
    let value = serde_json::from_str(body).map_err(|source| StoreError::Corrupt {
        kind,
        name: name.to_string(),
        source,
    })?;
    Ok(Stored {
        value,
        resource_version: r.get(1),
        seq: r.get(2),
    })
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
