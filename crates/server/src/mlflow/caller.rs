//! Who calls the tracking API: the workspace (the API token) or one job's command (its own
//! token, `<job>.<hex>`), which may touch its job's runs only.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use berth_core::secret::constant_time_eq;
use berth_store::tracking::RunInfo;

use super::error::MlflowError;
use crate::AppState;

/// The caller of a tracking route.
#[derive(Clone, Debug, PartialEq)]
pub enum Caller {
    /// The API token: every experiment and run.
    Workspace,
    /// A job's token: its own runs, and reading experiments.
    Job(String),
}

impl Caller {
    /// The job whose runs this caller is limited to.
    pub fn job(&self) -> Option<&str> {
        match self {
            Caller::Workspace => None,
            Caller::Job(j) => Some(j),
        }
    }

    /// Refuses a job's token on a run that is not its job's.
    pub fn may_touch(&self, run: &RunInfo) -> Result<(), MlflowError> {
        match self {
            Caller::Workspace => Ok(()),
            Caller::Job(j) if run.job_name.as_deref() == Some(j) => Ok(()),
            Caller::Job(j) => Err(MlflowError::PermissionDenied(format!(
                "job `{j}`'s token opens its own runs only; run `{}` is not one of them",
                run.run_id
            ))),
        }
    }

    /// Refuses a job's token on what only the workspace may change.
    pub fn workspace_only(&self, what: &str) -> Result<(), MlflowError> {
        match self {
            Caller::Workspace => Ok(()),
            Caller::Job(j) => Err(MlflowError::PermissionDenied(format!(
                "job `{j}`'s token cannot {what}; use the server's API token"
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = MlflowError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = Some(crate::api::bearer(&parts.headers).trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                MlflowError::Unauthenticated(
                    "no bearer token was sent; set MLFLOW_TRACKING_TOKEN to the server's token (`cat $BERTH_HOME/token`)".into(),
                )
            })?;
        if constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
            return Ok(Caller::Workspace);
        }
        let wrong = || MlflowError::Unauthenticated("the bearer token is wrong".into());
        let (job, _) = presented.rsplit_once('.').ok_or_else(wrong)?;
        let record = crate::services::records::job(state, job)
            .await
            .map_err(|_| wrong())?;
        let expected = super::jobs::job_token(&state.token_secret, &record.value);
        if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            Ok(Caller::Job(job.to_string()))
        } else {
            Err(wrong())
        }
    }
}
