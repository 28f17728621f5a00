//! Opening a store: SQLite in a file or in memory, or PostgreSQL from a URL, each brought up to
//! date by its own migrations; what a bad URL, an unreachable server or a newer schema says.

use std::path::Path;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::{Store, StoreError, dialect};

impl Store {
    /// Opens (creating if needed) the SQLite database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", encode_path(path));
        Self::sqlite(&url, 4).await
    }

    /// An empty in-memory SQLite store, for tests.
    pub async fn in_memory() -> Result<Store, StoreError> {
        // One connection: each in-memory connection would otherwise be its own database.
        Self::sqlite("sqlite::memory:", 1).await
    }

    /// Connects to the store at `url` (`postgres://...`, or `sqlite://...`) and brings its
    /// schema up to date; an unreachable database is given up on after 10 s.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_as(url, None).await
    }

    /// As [`Store::connect`], for the leader of lease `epoch`, on a database [`Store::connect`]
    /// already brought up to date (it is not migrated again): on PostgreSQL every write it
    /// makes is refused ([`StoreError::fenced`]) once another server holds the lease.
    pub async fn connect_fenced(url: &str, epoch: i64) -> Result<Store, StoreError> {
        Self::connect_as(url, Some(epoch)).await
    }

    async fn connect_as(url: &str, epoch: Option<i64>) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            return Self::sqlite(url, 4).await;
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(epoch) = epoch {
                        // Read by the fence triggers (migration 0005) on every write.
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET berth.epoch = '{epoch}'")))
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| StoreError::Connect {
                url: redact(url),
                reason: match e {
                    sqlx::Error::PoolTimedOut => "no answer within 10 s".to_string(),
                    sqlx::Error::Database(d) => d.message().to_string(),
                    e => e.to_string(),
                },
            })?;
        if epoch.is_some() {
            return Ok(Store::on(pool, dialect::Dialect::Postgres));
        }
        Self::migrate(pool, dialect::Dialect::Postgres).await
    }

    async fn sqlite(url: &str, connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL, synced on commit, and a wait for the write lock instead of an error.
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Self::migrate(pool, dialect::Dialect::Sqlite).await
    }

    async fn migrate(pool: AnyPool, dialect: dialect::Dialect) -> Result<Store, StoreError> {
        let migrator = match dialect {
            dialect::Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            dialect::Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        match migrator.run(&pool).await {
            Err(sqlx::migrate::MigrateError::VersionMissing(found)) => {
                return Err(StoreError::NewerSchema { found, known });
            }
            r => r?,
        }
        Ok(Store::on(pool, dialect))
    }

    fn on(pool: AnyPool, dialect: dialect::Dialect) -> Store {
        Store {
            pool,
            dialect,
            changes: Default::default(),
        }
    }
}

/// `url` without the password it may carry (for messages and logs).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}/{path}")
        }
        _ => url.to_string(),
    }
}

/// `path` for a `sqlite://` URL: percent-encoded where a URL would misread it.
fn encode_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' | 0x80.. | ..0x20 => out.push_str(&format!("%{b:02X}")),
            _ => out.push(*b as char),
        }
    }
    out
}
