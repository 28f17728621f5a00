//! The leader lease: when several servers share one database, the one holding an unexpired
//! lease leads; the others wait as standbys and take it over once it lapses. Each new holder
//! raises the epoch, so a leader that was paused past its lease finds, at its next renewal,
//! that it lost it. Times are the servers' own clocks (ms since the Unix epoch): their clocks
//! must agree to well within the lease's length.

use sqlx::Row;

use crate::{Store, StoreError};

/// A held lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it.
    pub holder: String,
    /// Its epoch (grows with each new holder).
    pub epoch: i64,
}

/// What claiming the lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// It is ours now.
    Leader(Lease),
    /// Another server holds it.
    Held {
        /// Who.
        holder: String,
        /// Its API, as it announced it.
        api_url: String,
        /// When its lease lapses unless renewed (ms since the Unix epoch).
        expires_ms: i64,
    },
}

impl Store {
    /// Takes the lease for `holder` until `now_ms + ttl_ms` if it is free, lapsed or already
    /// `holder`'s; otherwise says who holds it.
    pub async fn claim_lead(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Claim, StoreError> {
        let taken: Option<i64> = sqlx::query_scalar(self.sql(
            "UPDATE leader SET holder = ?, api_url = '', epoch = epoch + 1, expires_ms = ?
             WHERE id = 1 AND (expires_ms < ? OR holder = ?) RETURNING epoch",
        ))
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .bind(holder)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(epoch) = taken {
            return Ok(Claim::Leader(Lease {
                holder: holder.to_string(),
                epoch,
            }));
        }
        let row =
            sqlx::query(self.sql("SELECT holder, api_url, expires_ms FROM leader WHERE id = 1"))
                .fetch_one(&self.pool)
                .await?;
        Ok(Claim::Held {
            holder: row.get(0),
            api_url: row.get(1),
            expires_ms: row.get(2),
        })
    }

    /// Extends `lease` to `now_ms + ttl_ms` (and records the leader's API URL when given);
    /// `false` when it is no longer ours.
    pub async fn renew_lead(
        &self,
        lease: &Lease,
        api_url: Option<&str>,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.sql(
            "UPDATE leader SET expires_ms = ?, api_url = COALESCE(?, api_url)
             WHERE id = 1 AND holder = ? AND epoch = ?",
        ))
        .bind(now_ms + ttl_ms)
        .bind(api_url)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (a clean shutdown), so that a standby need not wait it out.
    pub async fn release_lead(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query(
            self.sql("UPDATE leader SET expires_ms = 0 WHERE id = 1 AND holder = ? AND epoch = ?"),
        )
        .bind(&lease.holder)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl StoreError {
    /// Why the database refused a write, when it refused it because another server took this
    /// one's leader lease over (the fence of migration 0005).
    pub fn fenced(&self) -> Option<String> {
        match self {
            StoreError::Database(sqlx::Error::Database(d))
                if d.code().as_deref() == Some(FENCED) =>
            {
                Some(d.message().to_string())
            }
            _ => None,
        }
    }
}

/// The SQLSTATE the fence raises.
const FENCED: &str = "BF001";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leads_the_other_waits_and_a_lapsed_lease_moves_on() -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            let Claim::Leader(a) = s.claim_lead("a", 1_000, 5_000).await? else {
                panic!("the lease was free")
            };
            assert!(
                s.renew_lead(&a, Some("http://a:8700"), 2_000, 5_000)
                    .await?
            );
            assert_eq!(
                s.claim_lead("b", 3_000, 5_000).await?,
                Claim::Held {
                    holder: "a".into(),
                    api_url: "http://a:8700".into(),
                    expires_ms: 7_000
                }
            );
            // a stops renewing (paused or dead): past its lease, b takes it, with a new epoch.
            let Claim::Leader(b) = s.claim_lead("b", 7_001, 5_000).await? else {
                panic!("the lease had lapsed")
            };
            assert!(b.epoch > a.epoch);
            // a wakes up: its renewal says it lost the lease.
            assert!(!s.renew_lead(&a, None, 7_002, 5_000).await?);
            // A clean shutdown hands it on at once.
            s.release_lead(&b).await?;
            assert!(matches!(
                s.claim_lead("c", 7_003, 5_000).await?,
                Claim::Leader(_)
            ));
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_leader_whose_lease_was_taken_over_cannot_write() -> Result<(), StoreError> {
        let url = crate::testing::postgres_url().await;
        let s = Store::connect(&url).await?;
        let Claim::Leader(a) = s.claim_lead("a", 1_000, 5_000).await? else {
            panic!("the lease was free")
        };
        let a_writes = Store::connect_fenced(&url, a.epoch).await?;
        let job = serde_json::json!({"n": 1});
        a_writes
            .insert(crate::Kind::Job, "before", Some("Queued"), &job)
            .await?;
        // a is paused past its lease; b takes it over.
        let Claim::Leader(b) = s.claim_lead("b", 7_001, 5_000).await? else {
            panic!("the lease had lapsed")
        };
        let refused = a_writes
            .insert(crate::Kind::Job, "after", Some("Queued"), &job)
            .await
            .expect_err("a's write is fenced off");
        let why = refused.fenced().expect("refused by the fence");
        assert!(why.contains("was taken over by another server"), "{why}");
        // Every table of the state is fenced (a statement trigger fires even for no rows).
        for table in [
            "resources",
            "experiments",
            "experiment_tags",
            "runs",
            "params",
            "run_tags",
            "metric_series",
            "metric_points",
            "logged_models",
        ] {
            let e: StoreError = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&a_writes.pool)
                .await
                .expect_err(table)
                .into();
            assert!(e.fenced().is_some(), "{table}: {e}");
        }
        let b_writes = Store::connect_fenced(&url, b.epoch).await?;
        b_writes
            .insert(crate::Kind::Job, "after", Some("Queued"), &job)
            .await?;
        // A connection without an epoch (one server alone, a tool) is not fenced.
        s.insert(crate::Kind::Job, "unfenced", Some("Queued"), &job)
            .await?;
        Ok(())
    }
}
