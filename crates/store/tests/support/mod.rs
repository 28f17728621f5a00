//! The stores the store's tests run on: SQLite (a file whose path needs encoding in a URL)
//! and PostgreSQL (a fresh database on the test cluster).
#![allow(dead_code)]

pub mod postgres;

use berth_store::Store;

/// The stores of one test, and the folder of the SQLite one.
pub struct Both {
    pub stores: Vec<(&'static str, Store)>,
    /// The SQLite store's file.
    pub sqlite_path: std::path::PathBuf,
    /// The PostgreSQL store's URL.
    pub postgres_url: String,
    _dir: tempfile::TempDir,
}

/// A SQLite store in a new folder, and a PostgreSQL store in a new database, each with a name
/// for messages.
pub async fn both() -> Both {
    let dir = tempfile::Builder::new()
        .prefix("berth store ")
        .tempdir()
        .expect("temp folder");
    let sqlite_path = dir.path().join("berth #1.db");
    let sqlite = Store::open(&sqlite_path).await.expect("open SQLite");
    let postgres_url = postgres::database().await;
    let pg = Store::connect(&postgres_url)
        .await
        .expect("connect to PostgreSQL");
    Both {
        stores: vec![("sqlite", sqlite), ("postgres", pg)],
        sqlite_path,
        postgres_url,
        _dir: dir,
    }
}
