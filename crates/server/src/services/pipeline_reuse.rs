//! Reuse of pipeline steps: the digest of what a step reads (its data inputs, code and conda
//! file, by contents), the key it makes with the step's job file, and the store of completed
//! steps by key. A step is reused only while the earlier job is still Completed and its
//! outputs still exist.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_core::job::{JobRecord, JobStatus, ResolvedOutput};
use berth_core::pipeline::reuse;
use berth_store::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;

/// A completed step another may reuse.
#[derive(Serialize, Deserialize)]
struct Reusable {
    job: String,
}

/// The digest of a file or a folder's files (relative paths, sizes and contents, in order);
/// `None` when it cannot be read.
pub fn digest(path: &Path) -> Option<String> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut files = Vec::new();
    collect(path, Path::new(""), &mut files).ok()?;
    files.sort();
    let mut buf = vec![0u8; 64 * 1024];
    for rel in files {
        let full = if rel.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            path.join(&rel)
        };
        ctx.update(rel.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        let mut f = std::fs::File::open(&full).ok()?;
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        ctx.update(&[0]);
    }
    Some(reuse::hex(ctx.finish().as_ref()))
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    // `join("")` would add a slash, which a file's path cannot have.
    let here = if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = std::fs::metadata(&here)?;
    if !meta.is_dir() {
        out.push(rel.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(&here)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        collect(root, &rel.join(entry.file_name()), out)?;
    }
    Ok(())
}

fn local(path: &str, base: &Path) -> Option<PathBuf> {
    (!path.contains("://") && !path.starts_with("azureml:")).then(|| base.join(path))
}

/// The reuse key of a step's materialized job file, whose relative paths start at `base`.
pub async fn key(job: &Value, base: &Path) -> String {
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    if let Some(inputs) = job.get("inputs").and_then(Value::as_object) {
        for (name, v) in inputs {
            if let Some(p) = v
                .get("path")
                .and_then(Value::as_str)
                .and_then(|p| local(p, base))
            {
                paths.push((format!("input:{name}"), p));
            }
        }
    }
    if let Some(p) = job
        .get("code")
        .and_then(Value::as_str)
        .and_then(|p| local(p, base))
    {
        paths.push(("code".into(), p));
    }
    if let Some(p) = job
        .get("environment")
        .and_then(|e| e.get("conda_file"))
        .and_then(Value::as_str)
        .and_then(|p| local(p, base))
    {
        paths.push(("conda_file".into(), p));
    }
    let digests: BTreeMap<String, String> = tokio::task::spawn_blocking(move || {
        paths
            .into_iter()
            .map(|(k, p)| {
                // An unreadable path never matches: the step runs (and says why).
                let d =
                    digest(&p).unwrap_or_else(|| format!("unreadable:{}", rand::random::<u64>()));
                (k, d)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    reuse::key(job, &digests)
}

/// The earlier job a step with this key may reuse, and its outputs: Completed, its outputs
/// all there.
pub async fn find(
    state: &AppState,
    key: &str,
) -> Option<(String, BTreeMap<String, ResolvedOutput>)> {
    let r = state
        .store
        .get::<Reusable>(Kind::StepReuse, key)
        .await
        .ok()??;
    let job = state
        .store
        .get::<JobRecord>(Kind::Job, &r.value.job)
        .await
        .ok()??;
    let ok = job.value.state.status() == JobStatus::Completed
        && job
            .value
            .outputs
            .values()
            .all(|o| Path::new(&o.path).exists());
    ok.then_some((r.value.job, job.value.outputs))
}

/// Records that `job` completed with this key (the latest such job wins).
pub async fn remember(state: &AppState, key: &str, job: &str) {
    let value = Reusable {
        job: job.to_string(),
    };
    match state.store.get::<Reusable>(Kind::StepReuse, key).await {
        Ok(Some(old)) => {
            let _ = state
                .store
                .update(Kind::StepReuse, key, old.resource_version, None, &value)
                .await;
        }
        _ => {
            let _ = state.store.insert(Kind::StepReuse, key, None, &value).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn a_file_and_a_folder_digest_by_contents() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let first = digest(&f).unwrap();
        std::fs::write(&f, "two").unwrap();
        assert_ne!(first, digest(&f).unwrap());
        let folder = digest(dir.path()).unwrap();
        std::fs::write(dir.path().join("b.txt"), "").unwrap();
        assert_ne!(
            folder,
            digest(dir.path()).unwrap(),
            "a new empty file counts"
        );
        assert!(digest(&dir.path().join("missing")).is_none());
    }
}
