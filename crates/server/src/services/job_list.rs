//! `GET /api/jobs`: pages of jobs, newest first, filtered in SQL, with an opaque continuation
//! token. A token is signed for its listing: one from another query, or changed, is refused.

use berth_core::api::JobView;
use berth_core::job::{JobRecord, JobStatus};
use berth_core::secret::constant_time_eq;
use berth_store::Kind;
use berth_store::listing::{Archived, ListQuery};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

/// The page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 100;
/// The largest page.
pub const MAX_PAGE: i64 = 1000;

/// What a listing asks for (the query string).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListParams {
    /// Page size.
    pub max_results: Option<i64>,
    /// Where the page starts: the token the previous page gave.
    pub continuation: Option<String>,
    /// Statuses, comma-separated.
    pub status: Option<String>,
    /// Experiment.
    pub experiment: Option<String>,
    /// A sweep's or pipeline's children.
    pub parent: Option<String>,
    /// Compute.
    pub compute: Option<String>,
    /// `include` or `only`.
    pub archived: Option<String>,
    /// Tags, `key=value`, comma-separated: all must match.
    pub tag: Option<String>,
    /// Only jobs accepted at or after this time (RFC 3339, or a date `YYYY-MM-DD`).
    pub created_after: Option<String>,
    /// Only jobs accepted before this time (RFC 3339, or a date `YYYY-MM-DD`).
    pub created_before: Option<String>,
}

impl ListParams {
    /// The filters in one canonical line, which a token is signed with.
    fn key(&self, statuses: &[&str]) -> String {
        format!(
            "status={}|experiment={}|parent={}|compute={}|archived={}|tag={}|after={}|before={}",
            statuses.join(","),
            self.experiment.as_deref().unwrap_or_default(),
            self.parent.as_deref().unwrap_or_default(),
            self.compute.as_deref().unwrap_or_default(),
            self.archived.as_deref().unwrap_or_default(),
            self.tag.as_deref().unwrap_or_default(),
            self.created_after.as_deref().unwrap_or_default(),
            self.created_before.as_deref().unwrap_or_default()
        )
    }
}

fn signature(state: &AppState, seq: i64, key: &str) -> String {
    let full = crate::auth::derive(&state.token_secret, &format!("job-list|{seq}|{key}"));
    full[..32].to_string()
}

fn token(state: &AppState, seq: i64, key: &str) -> String {
    format!("{seq}.{}", signature(state, seq, key))
}

fn position(state: &AppState, token: &str, key: &str) -> Result<i64, ApiError> {
    let refused = || {
        ApiError::BadRequest(
            "the continuation token is not one this server gave for this listing (another query's, or changed); list again without it".into(),
        )
    };
    let (seq, sig) = token.split_once('.').ok_or_else(refused)?;
    let seq: i64 = seq.parse().map_err(|_| refused())?;
    if !constant_time_eq(sig.as_bytes(), signature(state, seq, key).as_bytes()) {
        return Err(refused());
    }
    Ok(seq)
}

/// A time as the store writes it (RFC 3339, UTC): from RFC 3339, or a date (its midnight, UTC).
fn instant(what: &str, text: &str) -> Result<String, ApiError> {
    use time::format_description::well_known::Rfc3339;
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        let date = time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )?;
        Ok::<_, time::error::Parse>(date.midnight().assume_utc())
    });
    let t = parsed.map_err(|_| {
        ApiError::BadRequest(format!(
            "{what}={text} is not a time; write a date (2026-11-30) or RFC 3339 (2026-11-30T08:00:00Z)"
        ))
    })?;
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// One page of jobs and the token of the next, when there is more.
pub async fn list(
    state: &AppState,
    p: &ListParams,
) -> Result<(Vec<JobView>, Option<String>), ApiError> {
    let limit = match p.max_results {
        None => DEFAULT_PAGE,
        Some(n) if n < 1 => {
            return Err(ApiError::BadRequest(format!(
                "max_results is {n}; ask for 1 to {MAX_PAGE} jobs a page"
            )));
        }
        Some(n) => n.min(MAX_PAGE),
    };
    let statuses: Vec<&str> = p
        .status
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let known = JobStatus::all_names();
    if let Some(bad) = statuses.iter().find(|s| !known.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "`{bad}` is not a job status; use one of {}",
            known.join(", ")
        )));
    }
    let archived = match p.archived.as_deref() {
        None | Some("") | Some("exclude") => Archived::Exclude,
        Some("include") => Archived::Include,
        Some("only") => Archived::Only,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "archived={other}: use include or only"
            )));
        }
    };
    let compute = p
        .compute
        .as_deref()
        .map(|c| c.trim_start_matches("azureml:").to_string());
    let mut fields: Vec<(&str, &str)> = Vec::new();
    if let Some(e) = p.experiment.as_deref() {
        fields.push(("experiment_name", e));
    }
    if let Some(parent) = p.parent.as_deref() {
        fields.push(("parent_job_name", parent));
    }
    if let Some(c) = compute.as_deref() {
        fields.push(("compute", c));
    }
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for pair in p
        .tag
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.trim().is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ApiError::BadRequest(format!("tag `{pair}` is not key=value")))?;
        if !berth_store::listing::tag_key_ok(k.trim()) {
            return Err(ApiError::BadRequest(format!(
                "tag key `{k}` cannot be filtered on; use letters, digits, `_`, `-` and `.`"
            )));
        }
        tags.push((k.trim(), v));
    }
    let created_after = p
        .created_after
        .as_deref()
        .map(|t| instant("created_after", t))
        .transpose()?;
    let created_before = p
        .created_before
        .as_deref()
        .map(|t| instant("created_before", t))
        .transpose()?;
    let key = p.key(&statuses);
    let before = p
        .continuation
        .as_deref()
        .map(|t| position(state, t, &key))
        .transpose()?;
    let page = state
        .store
        .list_page::<JobRecord>(
            Kind::Job,
            &ListQuery {
                statuses: &statuses,
                fields: &fields,
                tags: &tags,
                created_after: created_after.as_deref(),
                created_before: created_before.as_deref(),
                archived,
                before,
                limit,
            },
        )
        .await?;
    let views = page
        .items
        .iter()
        .map(|j| crate::services::jobs::view(state, j))
        .collect();
    Ok((views, page.next.map(|seq| token(state, seq, &key))))
}
