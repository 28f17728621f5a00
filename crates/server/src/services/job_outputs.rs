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
    Ok(OutputRoot {
        root: output_path(state, name, output).await?,
        only: None,
    })
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
}
