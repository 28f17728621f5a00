//! The store's resource rows on both databases: versions, conflicts, upserts, kinds, reopening
//! and the change feed.

use super::*;

#[tokio::test]
async fn insert_get_update_with_versions() -> Result<(), StoreError> {
    for (db, s) in &crate::testing::both().await {
        eprintln!("on {db}");
        assert_eq!(
            s.insert(Kind::Job, "a", Some("Queued"), &serde_json::json!({"x": 1}))
                .await?,
            (1, 1)
        );
        assert!(matches!(
            s.insert(Kind::Job, "a", None, &serde_json::json!({})).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let got: Stored<serde_json::Value> =
            s.get(Kind::Job, "a").await?.ok_or(StoreError::NotFound {
                kind: Kind::Job,
                name: "a".into(),
            })?;
        assert_eq!(got.value["x"], 1);
        assert_eq!(
            s.update(
                Kind::Job,
                "a",
                1,
                Some("Running"),
                &serde_json::json!({"x": 2})
            )
            .await?,
            2
        );
        assert!(matches!(
            s.update(Kind::Job, "a", 1, None, &serde_json::json!({}))
                .await,
            Err(StoreError::Conflict { expected: 1, .. })
        ));
        assert!(matches!(
            s.update(Kind::Job, "zz", 1, None, &serde_json::json!({}))
                .await,
            Err(StoreError::NotFound { .. })
        ));
        let running: Vec<Stored<serde_json::Value>> =
            s.list_with_status(Kind::Job, &["Running"]).await?;
        assert_eq!(running.len(), 1);
    }
    Ok(())
}

#[tokio::test]
async fn upsert_bumps_version_and_kinds_are_separate() -> Result<(), StoreError> {
    for (db, s) in &crate::testing::both().await {
        eprintln!("on {db}");
        assert_eq!(s.upsert(Kind::InstanceType, "a", &1).await?, 1);
        assert_eq!(s.upsert(Kind::InstanceType, "a", &2).await?, 2);
        assert_eq!(s.upsert(Kind::Compute, "a", &3).await?, 1);
        let all: Vec<Stored<i32>> = s.list(Kind::InstanceType).await?;
        assert_eq!(all.iter().map(|x| x.value).collect::<Vec<_>>(), [2]);
        assert!(s.delete(Kind::InstanceType, "a").await?);
        assert!(!s.delete(Kind::InstanceType, "a").await?);
    }
    Ok(())
}

#[tokio::test]
async fn survives_reopen() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Database(e.into()))?;
    let path = dir.path().join("berth.db");
    Store::open(&path)
        .await?
        .insert(Kind::Job, "j", Some("Queued"), &"body")
        .await?;
    let again = Store::open(&path).await?;
    let got: Option<Stored<String>> = again.get(Kind::Job, "j").await?;
    assert_eq!(got.map(|g| g.value).as_deref(), Some("body"));
    Ok(())
}

#[tokio::test]
async fn a_write_wakes_the_watchers_of_its_kind_only() {
    let s = Store::in_memory().await.unwrap();
    let mut endpoints = s.watch(Kind::Endpoint);
    let jobs = s.watch(Kind::Job);
    s.insert(Kind::Endpoint, "e", None, &1).await.unwrap();
    assert!(endpoints.has_changed().unwrap());
    assert_eq!(*endpoints.borrow_and_update(), 1);
    s.update(Kind::Endpoint, "e", 1, None, &2).await.unwrap();
    s.delete(Kind::Endpoint, "e").await.unwrap();
    assert_eq!(*endpoints.borrow_and_update(), 3);
    assert!(!jobs.has_changed().unwrap());
}
