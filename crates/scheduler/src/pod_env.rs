//! The environment variables through which Berth's pod-side verbs (`berth fetch`, `berth
//! job-run`, `berth env-build`) receive what the server decided; shared by the code that writes
//! pod specs and by the verbs, which build without the `kubernetes` feature too.

/// Carries a fetch token to `berth fetch`.
pub const FETCH_TOKEN_ENV: &str = "BERTH_FETCH_TOKEN";

/// Carries the Python environment to build (JSON of a `PythonEnv`).
pub const PYTHON_ENV_VAR: &str = "BERTH_PYTHON_ENV";
