//! What a killed server or a failed submission can leave on disk, removed at start-up: job
//! folders with no job record (claimed, then the server died before the record was stored),
//! deployment snapshots never moved into place, and asset copies never finished. Nothing is
//! being submitted while this runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berth_store::{Kind, Store, StoreError};
use tracing::info;

/// Removes the leftovers under `home`; returns what was removed.
pub async fn remove(store: &Store, home: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let jobs: HashSet<String> = store.names(Kind::Job).await?.into_iter().collect();
    let home = home.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || {
        let mut found = orphan_job_folders(&home.join("jobs"), &jobs);
        found.extend(staged_revisions(&home.join("deployments")));
        for assets in ["models", "data"] {
            found.extend(children(&home.join(assets)).filter(|p| hidden_with(p, ".incoming-")));
        }
        found
            .into_iter()
            .filter(|p| std::fs::remove_dir_all(p).is_ok())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for p in &removed {
        info!(path = %p.display(), "removed what an interrupted submission left");
    }
    Ok(removed)
}

fn children(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

fn hidden_with(path: &Path, prefix: &str) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
}

/// Folders under `jobs/` that no stored job owns.
fn orphan_job_folders(jobs_dir: &Path, known: &HashSet<String>) -> Vec<PathBuf> {
    children(jobs_dir)
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !known.contains(n.to_string_lossy().as_ref()))
        })
        .collect()
}

/// `deployments/<endpoint>/<deployment>/.rev-N.<tag>`: snapshots of revisions never stored.
fn staged_revisions(deployments: &Path) -> Vec<PathBuf> {
    children(deployments)
        .flat_map(|endpoint| children(&endpoint).collect::<Vec<_>>())
        .flat_map(|deployment| children(&deployment).collect::<Vec<_>>())
        .filter(|p| hidden_with(p, ".rev-"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_folders_no_job_owns_are_orphans() {
        let t = tempfile::tempdir().unwrap();
        for name in ["kept", "orphan"] {
            std::fs::create_dir_all(t.path().join(name).join("code")).unwrap();
        }
        let known = HashSet::from(["kept".to_string()]);
        assert_eq!(
            orphan_job_folders(t.path(), &known),
            [t.path().join("orphan")]
        );
    }

    #[test]
    fn only_staged_revisions_are_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("ep/blue");
        for name in ["rev-1", ".rev-2.00ab"] {
            std::fs::create_dir_all(d.join(name)).unwrap();
        }
        assert_eq!(staged_revisions(t.path()), [d.join(".rev-2.00ab")]);
    }
}
