//! Every error the API returns: one enum, mapped to a status and a stable code in one match.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::api::{ErrorBody, ErrorDetail};
use berth_core::yaml::SpecError;
use berth_scheduler::manager::ManagerError;
use berth_scheduler::serving::ServingError;
use berth_store::StoreError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A named resource does not exist.
    #[error("{kind} `{name}` does not exist")]
    NotFound {
        /// Kind, as a person says it.
        kind: &'static str,
        /// Name.
        name: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A resource with this name exists.
    #[error("{kind} `{name}` already exists")]
    AlreadyExists {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The submitted spec is invalid.
    #[error("{0}")]
    InvalidSpec(SpecError),
    /// The request conflicts with the resource's state.
    #[error("{message}")]
    Conflict {
        /// What.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the server accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A cluster the request needed refused or did not answer.
    #[error("{0}")]
    Upstream(String),
    /// Something failed inside the server.
    #[error("{0}")]
    Internal(String),
    /// This server does not lead (a standby, or a leader whose lease was taken over); nothing
    /// was done.
    #[error("{0}")]
    NotLeader(String),
    /// A standby forwarded the request and the leader did not finish answering.
    #[error("{0}")]
    LeaderLost(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                Some(
                    "send Authorization: Bearer <token>; the token is in $BERTH_HOME/token".into(),
                ),
            ),
            ApiError::NotFound { hint, .. } => (StatusCode::NOT_FOUND, "NotFound", hint.clone()),
            ApiError::AlreadyExists { hint, .. } => {
                (StatusCode::CONFLICT, "AlreadyExists", hint.clone())
            }
            ApiError::InvalidSpec(e) => (StatusCode::BAD_REQUEST, "InvalidSpec", e.hint.clone()),
            ApiError::Conflict { hint, .. } => (StatusCode::CONFLICT, "Conflict", hint.clone()),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest", None),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                Some("send a smaller body, or raise max_body_bytes in the server config".into()),
            ),
            ApiError::Upstream(_) => (
                StatusCode::BAD_GATEWAY,
                "Upstream",
                Some("check that the cluster answers (`berth compute show`)".into()),
            ),
            ApiError::NotLeader(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "NotLeader",
                Some("another server leads on this database now: send the request again (to it, or through the servers' common address)".into()),
            ),
            ApiError::LeaderLost(_) => (
                StatusCode::BAD_GATEWAY,
                "LeaderLost",
                Some("it may have been acted on: look (`job show`, `job list`, ...) before sending it again".into()),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                Some("the server's log has the cause under that error number".into()),
            ),
        }
    }

    /// The error for a spec problem.
    pub fn spec(e: SpecError) -> Self {
        ApiError::InvalidSpec(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, hint) = self.parts();
        let (message, position) = match &self {
            ApiError::InvalidSpec(e) => (e.message.clone(), e.position.clone()),
            // The cause stays in the server's log: it may name paths and internals.
            ApiError::Internal(cause) => {
                let id = format!("{:08x}", rand::random::<u32>());
                tracing::error!(error = %cause, id = %id, "internal error");
                (format!("the server failed (error {id} in its log)"), None)
            }
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                hint,
                position,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, name } => ApiError::NotFound {
                kind: kind.noun(),
                name,
                hint: None,
            },
            StoreError::AlreadyExists { kind, name } => ApiError::AlreadyExists {
                kind: kind.noun(),
                name,
                hint: None,
            },
            e if let Some(why) = e.fenced() => ApiError::NotLeader(why),
            StoreError::Conflict { .. } => ApiError::Conflict {
                message: e.to_string(),
                hint: Some("retry the request".into()),
            },
            StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::Connect { .. }
            | StoreError::BadUrl(_)
            | StoreError::Encode(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::NotFound(name) => ApiError::NotFound {
                kind: "job",
                name,
                hint: Some("`berth job list` shows the jobs".into()),
            },
            ManagerError::AlreadyFinished { .. } => ApiError::Conflict {
                message: e.to_string(),
                hint: None,
            },
            ManagerError::Store(s) => s.into(),
        }
    }
}

impl From<ServingError> for ApiError {
    fn from(e: ServingError) -> Self {
        match e {
            #[cfg(feature = "kubernetes")]
            ServingError::Kube(_) | ServingError::Cluster { .. } => {
                ApiError::Upstream(e.to_string())
            }
            ServingError::Replicas(_) | ServingError::Environment { .. } => {
                ApiError::Upstream(e.to_string())
            }
            ServingError::NotOnCluster(_) => ApiError::Internal(e.to_string()),
            ServingError::NotRunning => ApiError::Conflict {
                message: e.to_string(),
                hint: None,
            },
            ServingError::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, String) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_500_body_keeps_the_cause_in_the_log() {
        let (status, body) = body_of(ApiError::Internal(
            "cannot open /srv/secret/berth.db".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("/srv/secret"), "{body}");
        assert!(body.contains("the server failed (error "), "{body}");
    }

    #[tokio::test]
    async fn a_store_not_found_is_a_404_naming_the_kind() {
        let e: ApiError = StoreError::NotFound {
            kind: berth_store::Kind::Endpoint,
            name: "ep".into(),
        }
        .into();
        let (status, body) = body_of(e).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("online endpoint `ep` does not exist"),
            "{body}"
        );
    }
}
