//! Where a job's outputs are on this machine: a named output's folder, or the artifacts
//! (`default`: what the command wrote to `./outputs` and `./logs`, beside its code).

use std::path::{Path, PathBuf};

use berth_core::job::ARTIFACTS_OUTPUT;
use berth_core::spec::data::DataType;
use berth_scheduler::workdir::JobDir;

use crate::AppState;
use crate::error::ApiError;
use crate::services::records;

/// The folders of the working directory that are kept as artifacts.
const ARTIFACT_FOLDERS: [&str; 2] = ["outputs", "logs"];

/// Where an output's files are, and which of its top-level folders belong to it (all, unless
/// it is the artifacts, which live in the working directory beside the code).
pub struct OutputRoot {
    /// The folder.
    pub root: PathBuf,
    /// Only these top-level folders of `root` are part of the output.
    pub only: Option<&'static [&'static str]>,
}

impl OutputRoot {
    /// Every file of the output: path relative to `root`, and size.
    pub fn files(&self) -> std::io::Result<Vec<(String, u64)>> {
        let Some(only) = self.only else {
            return berth_scheduler::workdir::list_files(&self.root);
        };
        let mut out = Vec::new();
        for top in only {
            let dir = self.root.join(top);
            if dir.is_dir() {
                for (rel, size) in berth_scheduler::workdir::list_files(&dir)? {
                    out.push((format!("{top}/{rel}"), size));
                }
            }
        }
        Ok(out)
    }

    /// True when `rel` (already checked to stay inside) belongs to the output.
    pub fn holds(&self, rel: &Path) -> bool {
        self.only.is_none_or(|only| {
            rel.components()
                .next()
                .is_some_and(|c| only.iter().any(|t| c.as_os_str() == *t))
        })
    }
}

/// Where an output's files are; [`ARTIFACTS_OUTPUT`] is the job's `./outputs` and `./logs`.
pub async fn output_root(
    state: &AppState,
    name: &str,
    output: &str,
) -> Result<OutputRoot, ApiError> {
    let job = records::job(state, name).await?;
    if output == ARTIFACTS_OUTPUT && !job.value.outputs.contains_key(ARTIFACTS_OUTPUT) {
        return Ok(OutputRoot {
            root: JobDir::new(&job.value.workdir).code(),
            only: Some(&ARTIFACT_FOLDERS),
        });
    }
    let root = output_path(state, name, output).await?;
    if job.value.pruned && root.starts_with(&job.value.workdir) {
        return Err(ApiError::Conflict {
            message: format!(
                "job `{name}`'s output `{output}` was removed by retention (the job was archived and older than the server's retain_days); its record and logs remain"
            ),
            hint: Some(format!("`berth job stream --name {name}` shows its log")),
        });
    }
    Ok(OutputRoot { root, only: None })
}

/// The folder or file an output was written to.
pub async fn output_path(state: &AppState, name: &str, output: &str) -> Result<PathBuf, ApiError> {
    let job = records::job(state, name).await?;
    let o = job
        .value
        .outputs
        .get(output)
        .ok_or_else(|| ApiError::NotFound {
            kind: "output",
            name: output.to_string(),
            hint: Some(format!(
                "job `{name}` has outputs: {}",
                job.value
                    .outputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })?;
    let p = PathBuf::from(&o.path);
    Ok(if o.data_type == DataType::UriFile {
        p.parent().map(Path::to_path_buf).unwrap_or(p)
    } else {
        p
    })
}

/// Writes an uploaded file: into a temporary beside `dest` named for this upload alone (two
/// uploads never share one), then renamed into place once complete. A cut-off upload leaves
/// nothing.
pub async fn write_streamed<S, E>(dest: &Path, mut stream: S) -> Result<(), ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", parent.display())))?;
    }
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(
        ".{file_name}.{:016x}.upload",
        rand::random::<u64>()
    ));
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", tmp.display())))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("the upload was cut short: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", tmp.display())))?;
        }
        file.sync_all()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_artifacts_hold_only_outputs_and_logs() {
        let root = OutputRoot {
            root: PathBuf::from("/w/code"),
            only: Some(&ARTIFACT_FOLDERS),
        };
        assert!(root.holds(Path::new("outputs/model.pkl")));
        assert!(root.holds(Path::new("logs/train.log")));
        assert!(!root.holds(Path::new("train.py")));
        assert!(!root.holds(Path::new("outputsx/a")));
    }

    #[tokio::test]
    async fn uploads_of_names_that_differ_only_in_extension_do_not_share_a_temporary() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let (tx_bin, rx_bin) =
            tokio::sync::mpsc::unbounded_channel::<Result<axum::body::Bytes, String>>();
        let (tx_txt, rx_txt) =
            tokio::sync::mpsc::unbounded_channel::<Result<axum::body::Bytes, String>>();
        let bin = dir.path().join("m.bin");
        let txt = dir.path().join("m.txt");
        let stream = |rx| tokio_stream_of(rx).boxed();
        let (a, b) = (bin.clone(), txt.clone());
        let first = tokio::spawn(async move { write_streamed(&a, stream(rx_bin)).await });
        let second = tokio::spawn(async move { write_streamed(&b, stream(rx_txt)).await });
        // Interleave: each chunk is on disk before the next is sent, so both uploads are open
        // at once.
        tx_bin.send(Ok("bin-1 ".into())).unwrap();
        written(dir.path(), 6).await;
        tx_txt.send(Ok("txt-1 ".into())).unwrap();
        written(dir.path(), 12).await;
        tx_bin.send(Ok("bin-2".into())).unwrap();
        drop(tx_bin);
        first.await.unwrap().unwrap();
        tx_txt.send(Ok("txt-2".into())).unwrap();
        drop(tx_txt);
        second.await.unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&bin).unwrap(), "bin-1 bin-2");
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "txt-1 txt-2");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "no temporary is left behind");
    }

    /// Waits (at most 10 s) until the folder's files hold `bytes` bytes in all.
    async fn written(dir: &Path, bytes: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let total: u64 = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            if total >= bytes {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {total} bytes written"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
