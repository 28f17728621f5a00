//! Starting on PostgreSQL: what a wrong URL, an unreachable server, a wrong password and a
//! database migrated by a newer Berth say, with nothing half-done.

mod support;

use berth_store::{Store, StoreError};

#[tokio::test]
async fn an_unreachable_server_says_where_and_why_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = Store::connect(&format!("postgres://berth:secret@127.0.0.1:{port}/berth"))
        .await
        .expect_err("nothing listens there");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(
        !msg.contains("secret"),
        "the password is not printed: {msg}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test]
async fn a_wrong_password_is_named_without_printing_it() {
    let url = support::postgres::database().await;
    let wrong = url.replace(support::postgres::PASSWORD, "not-it");
    let msg = Store::connect(&wrong)
        .await
        .expect_err("refused")
        .to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains("not-it"), "{msg}");
    Store::connect(&url).await.expect("the right password");
}

#[tokio::test]
async fn a_url_of_another_database_kind_is_refused() {
    let msg = Store::connect("mysql://root@db/berth")
        .await
        .expect_err("refused")
        .to_string();
    assert!(msg.contains("postgres://"), "{msg}");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_berth_is_refused_naming_both_versions() {
    use sqlx::Connection;
    let both = support::both().await;
    // A migration this Berth does not have, as a newer one would leave.
    let mut sqlite =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", both.sqlite_path.display()))
            .await
            .unwrap();
    sqlx::raw_sql("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', TRUE, X'00', 0)")
        .execute(&mut sqlite)
        .await
        .unwrap();
    let mut pg = sqlx::PgConnection::connect(&both.postgres_url)
        .await
        .unwrap();
    sqlx::raw_sql("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', TRUE, '\\x00'::bytea, 0)")
        .execute(&mut pg)
        .await
        .unwrap();
    for again in [
        Store::open(&both.sqlite_path).await,
        Store::connect(&both.postgres_url).await,
    ] {
        let msg = again.expect_err("refused").to_string();
        assert!(msg.contains("9999") && msg.contains("newer Berth"), "{msg}");
        assert!(msg.contains("up to 5"), "{msg}");
    }
}
