//! The stores the unit tests run on: SQLite in memory, and PostgreSQL in a fresh database of
//! the test cluster (`tests/support/postgres.rs`).

#[path = "../tests/support/postgres.rs"]
mod postgres;

use crate::Store;

/// One store of each kind, with its name for messages.
pub(crate) async fn both() -> Vec<(&'static str, Store)> {
    let sqlite = Store::in_memory().await.expect("SQLite in memory");
    let pg = Store::connect(&postgres::database().await)
        .await
        .expect("connect to PostgreSQL");
    vec![("sqlite", sqlite), ("postgres", pg)]
}

/// A fresh database of the test cluster, by URL.
pub(crate) async fn postgres_url() -> String {
    postgres::database().await
}
