//! Lists that cost the same at ten or ten million resources: a page newest first after a
//! position (keyset on `seq`, so a page stays the same while new resources are added), with
//! filters in SQL on the status and on top-level body fields; and counts by status, kept by
//! triggers as resources change.

use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::{Kind, Store, StoreError, Stored, decode};

/// Whether archived resources (body field `archived: true`) are listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Archived {
    /// Not listed (the default).
    #[default]
    Exclude,
    /// Listed with the others.
    Include,
    /// Only they are listed.
    Only,
}

/// A page to read.
#[derive(Clone, Debug, Default)]
pub struct ListQuery<'a> {
    /// Statuses to keep (any when empty).
    pub statuses: &'a [&'a str],
    /// Top-level body fields and the text each must equal (names of letters, digits and `_`).
    pub fields: &'a [(&'a str, &'a str)],
    /// Tags (the body's `spec.tags`) and the value each must have; keys of letters, digits,
    /// `_`, `-` and `.`.
    pub tags: &'a [(&'a str, &'a str)],
    /// Only resources stored at or after this time (RFC 3339, UTC).
    pub created_after: Option<&'a str>,
    /// Only resources stored before this time (RFC 3339, UTC).
    pub created_before: Option<&'a str>,
    /// Archived resources.
    pub archived: Archived,
    /// Only resources older than this position (`seq`), for the next page.
    pub before: Option<i64>,
    /// How many at most.
    pub limit: i64,
}

/// A page, and the position the next one starts after, when there is more.
#[derive(Clone, Debug)]
pub struct ListPage<T> {
    /// The resources, newest first.
    pub items: Vec<Stored<T>>,
    /// Where the next page starts, if any.
    pub next: Option<i64>,
}

fn field_ok(f: &str) -> bool {
    !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a tag key can be filtered on (it becomes part of a JSON path).
pub fn tag_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl Store {
    /// One page of `kind`'s resources, newest first.
    pub async fn list_page<T: DeserializeOwned>(
        &self,
        kind: Kind,
        q: &ListQuery<'_>,
    ) -> Result<ListPage<T>, StoreError> {
        let mut sql =
            String::from("SELECT body, resource_version, seq, name FROM resources WHERE kind = ?");
        if !q.statuses.is_empty() {
            sql.push_str(&format!(
                " AND status IN ({})",
                vec!["?"; q.statuses.len()].join(", ")
            ));
        }
        let d = self.dialect();
        for (f, _) in q.fields {
            // Field names are Berth's own, never a caller's text; checked all the same.
            assert!(field_ok(f), "not a field name: {f}");
            sql.push_str(&format!(" AND {} = ?", d.field(f)));
        }
        for (k, _) in q.tags {
            assert!(tag_key_ok(k), "not a tag key: {k}");
            sql.push_str(&format!(" AND {} = ?", d.tag()));
        }
        if q.created_after.is_some() {
            sql.push_str(" AND created_at >= ?");
        }
        if q.created_before.is_some() {
            sql.push_str(" AND created_at < ?");
        }
        match q.archived {
            Archived::Exclude => sql.push_str(&format!(" AND {}", d.archived(false))),
            Archived::Only => sql.push_str(&format!(" AND {}", d.archived(true))),
            Archived::Include => {}
        }
        if q.before.is_some() {
            sql.push_str(" AND seq < ?");
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        let mut query = sqlx::query(d.sql(&sql)).bind(kind.as_str());
        for s in q.statuses {
            query = query.bind(*s);
        }
        for (_, v) in q.fields {
            query = query.bind(*v);
        }
        for (k, v) in q.tags {
            query = query.bind(d.tag_param(k)).bind(*v);
        }
        if let Some(t) = q.created_after {
            query = query.bind(t);
        }
        if let Some(t) = q.created_before {
            query = query.bind(t);
        }
        if let Some(b) = q.before {
            query = query.bind(b);
        }
        let rows = query.bind(q.limit + 1).fetch_all(&self.pool).await?;
        let mut items: Vec<Stored<T>> = rows
            .iter()
            .map(|r| decode(kind, r.get::<&str, _>(3), r))
            .collect::<Result<_, _>>()?;
        let next = if items.len() as i64 > q.limit {
            items.truncate(q.limit as usize);
            items.last().map(|s| s.seq)
        } else {
            None
        };
        Ok(ListPage { items, next })
    }

    /// How many resources of `kind` have each status.
    pub async fn count_by_status(&self, kind: Kind) -> Result<Vec<(String, i64)>, StoreError> {
        // Kept by triggers (migration 0003): a few rows, however many resources.
        let rows =
            sqlx::query(self.dialect().sql(
                "SELECT status, n FROM status_counts WHERE kind = ? AND n > 0 ORDER BY status",
            ))
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    async fn fill(s: &Store, n: usize) -> Result<(), StoreError> {
        for i in 0..n {
            let status = if i % 2 == 0 { "Completed" } else { "Failed" };
            let body = json!({"i": i, "parent_job_name": if i % 3 == 0 { "p" } else { "q" }, "archived": i == 4});
            s.insert(Kind::Job, &format!("j{i}"), Some(status), &body)
                .await?;
        }
        Ok(())
    }

    fn names(items: &[Stored<Value>]) -> Vec<i64> {
        items
            .iter()
            .map(|s| s.value["i"].as_i64().unwrap_or(-1))
            .collect()
    }

    #[tokio::test]
    async fn pages_follow_each_other_newest_first_and_stay_put_while_jobs_are_added()
    -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            fill(s, 7).await?;
            let q = ListQuery {
                limit: 3,
                archived: Archived::Include,
                ..Default::default()
            };
            let first: ListPage<Value> = s.list_page(Kind::Job, &q).await?;
            assert_eq!(names(&first.items), [6, 5, 4]);
            // New jobs land before the first page: the second page does not move.
            s.insert(Kind::Job, "new", Some("Running"), &json!({"i": 99}))
                .await?;
            let second: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        before: first.next,
                        ..q.clone()
                    },
                )
                .await?;
            assert_eq!(names(&second.items), [3, 2, 1]);
            let third: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        before: second.next,
                        ..q.clone()
                    },
                )
                .await?;
            assert_eq!(names(&third.items), [0]);
            assert_eq!(third.next, None);
        }
        Ok(())
    }

    #[tokio::test]
    async fn tag_and_creation_time_filters_run_in_sql() -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            s.insert(
                Kind::Job,
                "a",
                Some("Completed"),
                &json!({"i": 0, "spec": {"tags": {"team.name": "vision"}}}),
            )
            .await?;
            s.insert(
                Kind::Job,
                "b",
                Some("Completed"),
                &json!({"i": 1, "spec": {"tags": {"team.name": "nlp"}}}),
            )
            .await?;
            let page: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        tags: &[("team.name", "nlp")],
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(names(&page.items), [1]);
            let later: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        created_after: Some("2999-01-01T00:00:00Z"),
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert!(later.items.is_empty());
            let earlier: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        created_before: Some("2999-01-01T00:00:00Z"),
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(earlier.items.len(), 2);
        }
        Ok(())
    }

    #[tokio::test]
    async fn status_field_and_archive_filters_run_in_sql() -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            fill(s, 7).await?;
            let page: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        statuses: &["Completed"],
                        fields: &[("parent_job_name", "p")],
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(names(&page.items), [6, 0]);
            let archived: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        archived: Archived::Only,
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(names(&archived.items), [4]);
            let without: ListPage<Value> = s
                .list_page(
                    Kind::Job,
                    &ListQuery {
                        limit: 10,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(without.items.len(), 6);
        }
        Ok(())
    }

    #[tokio::test]
    async fn counts_by_status_follow_inserts_updates_and_deletes() -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            fill(s, 5).await?;
            assert_eq!(
                s.count_by_status(Kind::Job).await?,
                [("Completed".to_string(), 3), ("Failed".to_string(), 2)]
            );
            let j0 = s.get::<Value>(Kind::Job, "j0").await?.unwrap();
            s.update(
                Kind::Job,
                "j0",
                j0.resource_version,
                Some("Failed"),
                &j0.value,
            )
            .await?;
            s.delete(Kind::Job, "j1").await?;
            let j2 = s.get::<Value>(Kind::Job, "j2").await?.unwrap();
            // A write that keeps the status keeps the counts.
            s.update(
                Kind::Job,
                "j2",
                j2.resource_version,
                Some("Completed"),
                &j2.value,
            )
            .await?;
            assert_eq!(
                s.count_by_status(Kind::Job).await?,
                [("Completed".to_string(), 2), ("Failed".to_string(), 2)]
            );
        }
        Ok(())
    }
}
