//! MLflow's error shape: `{"error_code": ..., "message": ...}` with the status MLflow gives
//! each code, which its client turns into `MlflowException`s.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_store::tracking::TrackingError;
use serde_json::json;

/// A tracking API error.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// No or a wrong token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A job's token on what is not its job's.
    #[error("{0}")]
    PermissionDenied(String),
    /// No such experiment, run, metric or artifact.
    #[error("{0}")]
    NotFound(String),
    /// The name or id is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A value MLflow would refuse.
    #[error("{0}")]
    Invalid(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
}

impl MlflowError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            MlflowError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            MlflowError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            MlflowError::NotFound(_) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
            MlflowError::AlreadyExists(_) => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            MlflowError::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
            MlflowError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        (
            status,
            Json(json!({"error_code": code, "message": self.to_string()})),
        )
            .into_response()
    }
}

impl From<TrackingError> for MlflowError {
    fn from(e: TrackingError) -> Self {
        match e {
            TrackingError::NotFound(m) => MlflowError::NotFound(m),
            TrackingError::AlreadyExists(m) => MlflowError::AlreadyExists(m),
            TrackingError::Invalid(m) => MlflowError::Invalid(m),
            TrackingError::Store(e) => MlflowError::Internal(e.to_string()),
        }
    }
}

impl From<berth_store::StoreError> for MlflowError {
    fn from(e: berth_store::StoreError) -> Self {
        MlflowError::Internal(e.to_string())
    }
}
