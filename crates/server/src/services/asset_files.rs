//! The files of models and data assets: where a file's `path:` says they are (beside the file,
//! in a datastore, or in a job's output), and their content-addressed copy under
//! `$BERTH_HOME/<kind>/blobs/sha256-<digest>/<name>`, made once and never changed.

use std::path::{Path, PathBuf};

use berth_core::spec::asset::ArtifactSource;
use berth_core::spec::data::DataPath;
use berth_core::yaml::Source;
use berth_scheduler::workdir::{copy_tree, list_files};

use crate::AppState;
use crate::error::ApiError;
use crate::services::job_outputs::output_root;
use crate::services::resources::resolve_datastore;

/// Where the files a `path:` names are on this machine. `None` for a URL (not copied).
pub async fn locate(
    state: &AppState,
    src: &Source<'_>,
    written: &str,
    source: &ArtifactSource,
    base: &Path,
) -> Result<Option<PathBuf>, ApiError> {
    let at = |m: String| src.error_near("path", Some(written), m);
    let found = match source {
        ArtifactSource::Data(DataPath::Url { .. }) => return Ok(None),
        ArtifactSource::Data(DataPath::Asset { reference }) => {
            return Err(ApiError::spec(
                at(format!(
                    "`{reference}` is a registered asset; a new version is registered from files"
                ))
                .hint("give a local path, a datastore path or a job output"),
            ));
        }
        ArtifactSource::Data(DataPath::Local { path }) => base.join(path),
        ArtifactSource::Data(DataPath::Datastore { datastore, path }) => {
            resolve_datastore(state, src, written, datastore, path).await?
        }
        ArtifactSource::JobOutput { job, output, path } => {
            let root = output_root(state, job, output)
                .await
                .map_err(|e| ApiError::spec(at(e.to_string())))?;
            let rel = Path::new(path);
            if !path.is_empty() && !root.holds(rel) {
                return Err(ApiError::spec(
                    at(format!(
                        "job `{job}` keeps only ./outputs and ./logs as artifacts; `{path}` is neither"
                    ))
                    .hint("files the job wrote to ./outputs are at artifacts/paths/outputs/<path>"),
                ));
            }
            root.root.join(rel)
        }
    };
    if !found.exists() {
        return Err(ApiError::spec(at(format!(
            "{} does not exist",
            found.display()
        ))));
    }
    Ok(Some(found))
}

/// A content-addressed copy.
#[derive(Debug)]
pub struct Copied {
    /// `blobs/sha256-<digest>`: holds the file or folder under its own name.
    pub dir: PathBuf,
    /// The file's or folder's name inside `dir`.
    pub entry: String,
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}

impl Copied {
    /// The copied file or folder itself.
    pub fn entry_path(&self) -> PathBuf {
        self.dir.join(&self.entry)
    }
}

/// Copies `from` (a file or folder) into `root/blobs/`, keeping its name; the same content
/// under the same name is stored once.
pub async fn store(root: &Path, from: &Path) -> Result<Copied, ApiError> {
    let entry = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .unwrap_or_else(|| "files".into());
    let root = root.to_path_buf();
    let from = from.to_path_buf();
    let tmp = root.join(format!(".incoming-{}", rand::random::<u64>()));
    let staging = tmp.clone();
    let name = entry.clone();
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<(PathBuf, u64, u64)> {
        let dst = staging.join(&name);
        if from.is_dir() {
            copy_tree(&from, &dst)?;
        } else {
            std::fs::create_dir_all(&staging)?;
            std::fs::copy(&from, &dst)?;
        }
        let files = list_files(&staging)?;
        let blob = root
            .join("blobs")
            .join(format!("sha256-{}", digest(&staging, &files)?));
        if blob.exists() {
            std::fs::remove_dir_all(&staging)?;
        } else {
            std::fs::create_dir_all(root.join("blobs"))?;
            std::fs::rename(&staging, &blob)?;
        }
        Ok((blob, files.len() as u64, files.iter().map(|f| f.1).sum()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        ApiError::Internal(format!("cannot copy the files: {e}"))
    })?;
    Ok(Copied {
        dir: copied.0,
        entry,
        files: copied.1,
        bytes: copied.2,
    })
}

/// SHA-256 over every file's relative path and contents, in path order; files are read in
/// chunks, so a large model costs no more memory than a small one.
fn digest(root: &Path, files: &[(String, u64)]) -> std::io::Result<String> {
    use std::io::Read;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    for (rel, _) in files {
        ctx.update(rel.as_bytes());
        ctx.update(&[0]);
        let mut file = std::fs::File::open(root.join(rel))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        ctx.update(&[0]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
