//! The two databases the store runs on, and the little SQL that differs between them: how
//! parameters are written, and how a field of a JSON body is read. Everything else is the
//! SQL both accept.

/// Which database a store is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, one file under the home (the embedded default).
    Sqlite,
    /// PostgreSQL, from `--store postgres://...`.
    Postgres,
}

impl Dialect {
    /// `sql` with its `?` parameters as this database writes them (`$1`, `$2`, ... for
    /// PostgreSQL). A `?` inside a quoted string is left alone.
    pub fn sql(self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => numbered(sql),
        })
    }

    /// A top-level field of the resource's JSON body, as text.
    pub fn field(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(body, '$.{name}')"),
            Dialect::Postgres => format!("(body::jsonb ->> '{name}')"),
        }
    }

    /// A tag of the body's `spec.tags`, as text, whose key is the next parameter (bound with
    /// [`Dialect::tag_param`]).
    pub fn tag(self) -> &'static str {
        match self {
            Dialect::Sqlite => "json_extract(body, ?)",
            Dialect::Postgres => "(body::jsonb -> 'spec' -> 'tags' ->> ?)",
        }
    }

    /// The parameter [`Dialect::tag`] takes for tag `key`.
    pub fn tag_param(self, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("$.spec.tags.\"{key}\""),
            Dialect::Postgres => key.to_string(),
        }
    }

    /// The case-insensitive `LIKE` (SQLite's `LIKE` is, for ASCII; PostgreSQL's is not).
    pub fn like(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    /// The condition that the body's `archived` is set (`true`), or is not.
    pub fn archived(self, archived: bool) -> &'static str {
        match (self, archived) {
            (Dialect::Sqlite, true) => "json_extract(body, '$.archived') = 1",
            (Dialect::Sqlite, false) => "COALESCE(json_extract(body, '$.archived'), 0) = 0",
            (Dialect::Postgres, true) => "(body::jsonb ->> 'archived') = 'true'",
            (Dialect::Postgres, false) => {
                "COALESCE((body::jsonb ->> 'archived'), 'false') = 'false'"
            }
        }
    }
}

/// `?` parameters numbered `$1`, `$2`, ... in order, outside quoted strings.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_for_postgres_outside_quotes() {
        assert_eq!(
            Dialect::Postgres
                .sql("SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)")
                .0,
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
        assert_eq!(Dialect::Sqlite.sql("x = ?").0, "x = ?");
    }
}
