//! One page of a kind's resources, newest first, filtered by status and name in SQL: what a
//! list of thousands of jobs shows without reading them all.

use serde::de::DeserializeOwned;
use sqlx::Row;

use crate::{Kind, Store, StoreError, Stored, decode};

/// What a page shows: resources whose status is one of `statuses` (any when empty) and whose
/// name holds `name_like` (any when empty).
#[derive(Clone, Debug, Default)]
pub struct PageQuery<'a> {
    /// Statuses to keep.
    pub statuses: &'a [&'a str],
    /// Text the name must hold.
    pub name_like: &'a str,
    /// How many to skip.
    pub offset: i64,
    /// How many at most.
    pub limit: i64,
}

/// A page and how many match in all.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The resources, newest first.
    pub items: Vec<Stored<T>>,
    /// How many match the query in all.
    pub total: i64,
}

fn like_pattern(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

impl Store {
    /// A page of `kind`'s resources, newest first.
    pub async fn page<T: DeserializeOwned>(
        &self,
        kind: Kind,
        q: &PageQuery<'_>,
    ) -> Result<Page<T>, StoreError> {
        let status_clause = if q.statuses.is_empty() {
            String::new()
        } else {
            format!("AND status IN ({})", vec!["?"; q.statuses.len()].join(", "))
        };
        let name_clause = if q.name_like.is_empty() {
            String::new()
        } else {
            format!("AND name {} ? ESCAPE '\\'", self.dialect().like())
        };
        let filter = format!("WHERE kind = ? {status_clause} {name_clause}");
        let count_sql = if q.name_like.is_empty() {
            // Counts by status are kept by triggers: the total costs the same at any history.
            format!(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM status_counts WHERE kind = ? {status_clause}"
            )
        } else {
            format!("SELECT COUNT(*) FROM resources {filter}")
        };
        let page_sql = format!(
            "SELECT body, resource_version, seq, name FROM resources {filter} ORDER BY seq DESC LIMIT ? OFFSET ?"
        );
        let pattern = like_pattern(q.name_like);
        let bind = |sql: String| {
            let mut query = sqlx::query(self.dialect().sql(&sql)).bind(kind.as_str());
            for s in q.statuses {
                query = query.bind(*s);
            }
            if !q.name_like.is_empty() {
                query = query.bind(pattern.clone());
            }
            query
        };
        let total: i64 = bind(count_sql).fetch_one(&self.pool).await?.get(0);
        let rows = bind(page_sql)
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        let items = rows
            .iter()
            .map(|r| decode(kind, r.get::<&str, _>(3), r))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_page_is_newest_first_and_filtered_in_sql() -> Result<(), StoreError> {
        for (db, s) in &crate::testing::both().await {
            eprintln!("on {db}");
            for (i, status) in ["Completed", "Failed", "Completed", "Running"]
                .iter()
                .enumerate()
            {
                s.insert(
                    Kind::Job,
                    &format!("job_{i}"),
                    Some(status),
                    &serde_json::json!({"i": i}),
                )
                .await?;
            }
            s.insert(
                Kind::Job,
                "odd_100%",
                Some("Completed"),
                &serde_json::json!({}),
            )
            .await?;
            let q = PageQuery {
                statuses: &["Completed"],
                name_like: "job",
                offset: 0,
                limit: 1,
            };
            let p: Page<serde_json::Value> = s.page(Kind::Job, &q).await?;
            assert_eq!(p.total, 2);
            assert_eq!(p.items[0].value["i"], 2, "newest first");
            let q = PageQuery {
                name_like: "100%",
                limit: 10,
                ..Default::default()
            };
            let p: Page<serde_json::Value> = s.page(Kind::Job, &q).await?;
            assert_eq!(p.total, 1, "% in the text is a character, not a wildcard");
            // Without a name, the totals come from the kept counts.
            let q = PageQuery {
                statuses: &["Completed", "Running"],
                limit: 2,
                ..Default::default()
            };
            let p: Page<serde_json::Value> = s.page(Kind::Job, &q).await?;
            assert_eq!((p.total, p.items.len()), (4, 2));
            let all: Page<serde_json::Value> = s
                .page(
                    Kind::Job,
                    &PageQuery {
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await?;
            assert_eq!(all.total, 5);
        }
        Ok(())
    }
}
