//! The files a Kubernetes pod fetches from this server when they are too large for a
//! ConfigMap (`berth_scheduler::backend::kubernetes::delivery`): a job's code and local inputs,
//! opened by the job's own token, and a deployment revision's scoring code and model, opened
//! by a token signed for that revision. Nothing else on this machine can be read this way.

use std::path::PathBuf;

use berth_core::api::OutputFile;
use berth_core::job::ResolvedInput;
use berth_core::secret::constant_time_eq;
use berth_scheduler::workdir::{JobDir, RevisionDir, list_files};

use crate::AppState;
use crate::error::ApiError;

/// Named roots a pod may read: `(part, folder or file)`.
#[derive(Debug)]
pub struct PodFiles(Vec<(String, PathBuf)>);

/// The files of job `name`, for a bearer of its token, while the job is unfinished.
pub async fn for_job(state: &AppState, name: &str, token: &str) -> Result<PodFiles, ApiError> {
    // An unknown job answers as a wrong token does: the route does not tell which jobs exist.
    let job = match crate::services::records::job(state, name).await {
        Ok(j) => j.value,
        Err(ApiError::NotFound { .. }) => {
            return Err(ApiError::Unauthorized(format!(
                "this is not job `{name}`'s token"
            )));
        }
        Err(e) => return Err(e),
    };
    let expected = job.upload_token.as_deref().unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Unauthorized(format!(
            "this is not job `{name}`'s token"
        )));
    }
    if job.state.status().is_terminal() {
        return Err(ApiError::Conflict {
            message: format!("job `{name}` has finished; its pod needs no more files"),
            hint: None,
        });
    }
    let mut parts = vec![("code".to_string(), JobDir::new(&job.workdir).code())];
    for (input, resolved) in &job.inputs {
        if let ResolvedInput::Path { path, .. } = resolved {
            parts.push((format!("inputs/{input}"), PathBuf::from(path)));
        }
    }
    Ok(PodFiles(parts))
}

/// The files of a deployment's revision, for a bearer of that revision's token: the current
/// one from the record, an earlier one (whose replicas may still start while a rollout is
/// under way or has failed) from its folder.
pub async fn for_deployment(
    state: &AppState,
    endpoint: &str,
    deployment: &str,
    revision: u32,
    token: &str,
) -> Result<PodFiles, ApiError> {
    let refused = |why: String| {
        ApiError::Unauthorized(format!(
            "this is not a token for revision {revision} of `{endpoint}/{deployment}`{why}"
        ))
    };
    // An unknown deployment answers as a wrong token does (no enumeration); a deleted one's
    // tokens fail with it.
    let d = match crate::services::records::deployment(state, endpoint, deployment).await {
        Ok(d) => d.value,
        Err(ApiError::NotFound { .. }) => return Err(refused(String::new())),
        Err(e) => return Err(e),
    };
    crate::auth::verify_revision_token(&state.token_secret, &d, revision, token)
        .map_err(|e| refused(format!(": {e}")))?;
    let mut parts = Vec::new();
    if d.revision == revision {
        if d.script.is_some() {
            parts.push(("code".to_string(), d.revision_dir().join("code")));
        }
        if let Some(model) = &d.model_dir {
            parts.push(("model".to_string(), PathBuf::from(model)));
        }
        return Ok(PodFiles(parts));
    }
    let dir = RevisionDir::of(&d.dir, revision);
    if revision > d.revision || !dir.root().is_dir() {
        return Err(ApiError::Conflict {
            message: format!(
                "revision {revision} of `{endpoint}/{deployment}` is not kept (the deployment is at revision {})",
                d.revision
            ),
            hint: None,
        });
    }
    let code = dir.code();
    if std::fs::read_dir(&code).is_ok_and(|mut e| e.next().is_some()) {
        parts.push(("code".to_string(), code));
    }
    if let Ok(model) = std::fs::read_to_string(dir.model_note()) {
        parts.push(("model".to_string(), PathBuf::from(model)));
    }
    Ok(PodFiles(parts))
}

impl PodFiles {
    /// Every file, as `<part>/<path>` with its size.
    pub async fn listing(self) -> Result<Vec<OutputFile>, ApiError> {
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (part, root) in &self.0 {
                let files = list_files(root).map_err(|e| {
                    ApiError::Internal(format!("cannot list {}: {e}", root.display()))
                })?;
                out.extend(files.into_iter().map(|(path, size)| OutputFile {
                    path: format!("{part}/{path}"),
                    size,
                }));
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }

    /// Where `<part>/<path>` is: the part's root and the path inside it (empty when the part
    /// is one file). Refuses anything outside the parts.
    pub fn locate(&self, path: &str) -> Result<(PathBuf, PathBuf), ApiError> {
        let outside = || not_listed(path);
        let (root, rel) = self
            .0
            .iter()
            .filter_map(|(part, root)| {
                let rel = path.strip_prefix(part.as_str())?.strip_prefix('/')?;
                Some((root, rel))
            })
            .next()
            .ok_or_else(outside)?;
        if rel.contains('\0') {
            return Err(ApiError::BadRequest("a path cannot hold a NUL byte".into()));
        }
        let rel_path = berth_core::names::inside_path(rel).ok_or_else(outside)?;
        if root.is_file() {
            return match root.file_name() {
                Some(name) if name == rel_path.as_os_str() => Ok((root.clone(), PathBuf::new())),
                _ => Err(outside()),
            };
        }
        Ok((root.clone(), rel_path.to_path_buf()))
    }

    /// Opens `<part>/<path>` for reading; links inside a part are followed only as far as
    /// they stay in it.
    pub async fn open(&self, path: &str) -> Result<tokio::fs::File, ApiError> {
        let (root, rel) = self.locate(path)?;
        let owned = path.to_string();
        tokio::task::spawn_blocking(move || {
            let file = if rel.as_os_str().is_empty() {
                std::fs::File::open(&root)
            } else {
                berth_scheduler::tree::open_inside(&root, &rel)
            };
            file.map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => {
                    not_listed(&owned)
                }
                _ => ApiError::Internal(format!("cannot read {}: {e}", root.display())),
            })
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(tokio::fs::File::from_std)
    }
}

/// A path that is not one the listing names.
fn not_listed(path: &str) -> ApiError {
    ApiError::NotFound {
        kind: "file",
        name: path.to_string(),
        hint: Some("the listing names every file a pod may fetch".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_files_inside_a_part_are_served() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("code")).unwrap();
        std::fs::write(t.path().join("big.bin"), "x").unwrap();
        let files = PodFiles(vec![
            ("code".into(), t.path().join("code")),
            ("inputs/big".into(), t.path().join("big.bin")),
        ]);
        assert_eq!(
            files.locate("code/sub/a.py").unwrap(),
            (t.path().join("code"), PathBuf::from("sub/a.py"))
        );
        assert_eq!(
            files.locate("inputs/big/big.bin").unwrap(),
            (t.path().join("big.bin"), PathBuf::new())
        );
        for bad in [
            "code/../big.bin",
            "code/",
            "codex/a",
            "inputs/big/other",
            "inputs/big",
            "/etc/passwd",
            "code//etc/passwd",
        ] {
            assert!(files.locate(bad).is_err(), "{bad}");
        }
    }
}
