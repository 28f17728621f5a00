//! A job's output files for its page, and their downloads (the API's own handler, behind the
//! studio's session).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use berth_core::job::ARTIFACTS_OUTPUT;

use super::session::Session;
use crate::AppState;

/// Every file of the job's artifacts and named outputs: (output, path, size).
pub async fn files(s: &AppState, name: &str) -> Vec<(String, String, u64)> {
    let Ok(job) = crate::services::jobs::get(s, name).await else {
        return Vec::new();
    };
    let mut outputs = vec![ARTIFACTS_OUTPUT.to_string()];
    outputs.extend(
        job.value
            .outputs
            .keys()
            .filter(|o| o.as_str() != ARTIFACTS_OUTPUT)
            .cloned(),
    );
    let mut out = Vec::new();
    for output in outputs {
        let Ok(root) = crate::services::job_outputs::output_root(s, name, &output).await else {
            continue;
        };
        let listed = tokio::task::spawn_blocking(move || root.files()).await;
        if let Ok(Ok(list)) = listed {
            out.extend(
                list.into_iter()
                    .map(|(path, size)| (output.clone(), path, size)),
            );
        }
    }
    out
}

/// `GET /studio/jobs/{name}/outputs/{output}/{*path}`.
pub async fn download(
    State(s): State<AppState>,
    _session: Session,
    Path(parts): Path<(String, String, String)>,
) -> Response {
    match crate::api::output_file(State(s), Path(parts)).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
