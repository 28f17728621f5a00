//! MLflow models deployed without code: Berth's built-in scorer (`mlflow.pyfunc`, MLflow's and
//! Azure ML's request formats) and the environment the model declares beside its `MLmodel`.

use std::path::{Path, PathBuf};

use berth_core::mlflow_env::model_environment;
use berth_core::spec::environment::ResolvedEnvironment;
use berth_core::yaml::SpecError;

use crate::error::ApiError;

const SCORER: &str = include_str!("mlflow_score.py");
const SCORER_FILE: &str = "score.py";

/// The folder holding the built-in scorer (written when missing or out of date) and its
/// file name: a deployment's code, snapshotted like any other.
pub async fn scorer(home: &Path) -> Result<(PathBuf, String), ApiError> {
    let dir = home.join("builtin").join("mlflow");
    let file = dir.join(SCORER_FILE);
    if tokio::fs::read_to_string(&file).await.ok().as_deref() != Some(SCORER) {
        let tmp = dir.join(format!(".{SCORER_FILE}.{}", rand::random::<u64>()));
        let written = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&tmp, SCORER).await?;
            tokio::fs::rename(&tmp, &file).await
        };
        written.await.map_err(|e| {
            ApiError::Internal(format!(
                "cannot write the MLflow scorer into {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok((dir, SCORER_FILE.to_string()))
}

/// The environment `folder` (which holds `MLmodel`) declares; an image the deployment names
/// is kept.
pub fn environment(folder: &Path, image: Option<String>) -> Result<ResolvedEnvironment, SpecError> {
    let (python, from) = model_environment(|name| std::fs::read_to_string(folder.join(name)).ok())?;
    Ok(ResolvedEnvironment {
        source: format!("the MLflow model's {from}"),
        image,
        python: Some(python),
    })
}
