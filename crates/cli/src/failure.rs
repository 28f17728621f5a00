//! What the CLI prints when something goes wrong: one clear line, where, and a hint.

use std::fmt;

use berth_core::api::ErrorDetail;
use reqwest::StatusCode;

/// A failure to report and the exit code to leave with.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong (with file:line:column in front when known).
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
    /// Exit code.
    pub code: i32,
}

#[cfg(feature = "kubernetes")]
impl From<berth_scheduler::backend::kubernetes::error::KubeError> for Failure {
    fn from(e: berth_scheduler::backend::kubernetes::error::KubeError) -> Self {
        Failure::new(e.to_string())
    }
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            code: 1,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// From an API error body.
    pub fn from_api(status: StatusCode, e: ErrorDetail) -> Self {
        let message = match &e.position {
            Some(p) => format!("{p}: {}", e.message),
            None => e.message,
        };
        let code = if status == StatusCode::UNAUTHORIZED {
            3
        } else {
            1
        };
        Failure {
            message,
            hint: e.hint,
            code,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}
