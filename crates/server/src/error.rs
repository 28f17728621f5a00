//! Every error the API returns: one enum, mapped to a status and a stable code in one match.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::api::{ErrorBody, ErrorDetail};
use berth_core::yaml::SpecError;
use berth_scheduler::manager::ManagerError;
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
    /// A feature Berth does not have yet.
    #[error("{0}")]
    NotSupported(String),
    /// Something failed inside the server.
    #[error("{0}")]
    Internal(String),
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
            ApiError::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "NotSupported", None),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                Some("see the server's log".into()),
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
            other => (other.to_string(), None),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %message, "internal error");
        }
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
            StoreError::Conflict { .. } => ApiError::Conflict {
                message: e.to_string(),
                hint: Some("retry the request".into()),
            },
            other => ApiError::Internal(other.to_string()),
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
