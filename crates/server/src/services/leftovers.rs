//! What a killed server or a failed submission can leave on disk: deployment snapshots never
//! moved into place and asset copies never finished (removed at start-up, before anything is
//! submitted), and job folders with no job record (claimed, then the server died before the
//! record was stored). Job folders are looked at in the background, a few hundred at a time,
//! and only those last changed before the server started: a history of a million jobs neither
//! delays the start nor is held in memory, and a submission in progress is never touched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_store::{Kind, Store, StoreError};
use tracing::info;

/// How many job folders are looked up in one query.
const BATCH: usize = 500;

/// Removes the staged leftovers under `home` (not job folders); returns what was removed.
pub async fn remove(_store: &Store, home: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let home = home.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || {
        let mut found = staged_revisions(&home.join("deployments"));
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

/// Removes the job folders under `home/jobs` that no stored job owns and that were last
/// changed before `started`; returns them. Runs off the async threads.
pub async fn remove_orphan_job_folders(
    store: Store,
    home: &Path,
    started: SystemTime,
) -> Vec<PathBuf> {
    let jobs_dir = home.join("jobs");
    let rt = tokio::runtime::Handle::current();
    let removed = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        let mut batch: Vec<PathBuf> = Vec::new();
        let mut flush = |batch: &mut Vec<PathBuf>| {
            let names: Vec<String> = batch
                .iter()
                .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                .collect();
            let Ok(known) = rt.block_on(store.existing(Kind::Job, &names)) else {
                batch.clear();
                return;
            };
            removed.extend(orphans(batch.drain(..), &known));
        };
        for dir in children(&jobs_dir) {
            let old = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < started);
            if old {
                batch.push(dir);
            }
            if batch.len() == BATCH {
                flush(&mut batch);
            }
        }
        flush(&mut batch);
        removed
    })
    .await
    .unwrap_or_default();
    for p in &removed {
        info!(path = %p.display(), "removed a job folder no job owns (an interrupted submission)");
    }
    removed
}

/// The folders of `batch` no job in `known` owns, removed.
fn orphans(batch: impl Iterator<Item = PathBuf>, known: &HashSet<String>) -> Vec<PathBuf> {
    batch
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !known.contains(n.to_string_lossy().as_ref()))
        })
        .filter(|p| std::fs::remove_dir_all(p).is_ok())
        .collect()
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
        let batch = ["kept", "orphan"].map(|n| t.path().join(n));
        assert_eq!(
            orphans(batch.into_iter(), &known),
            [t.path().join("orphan")]
        );
        assert!(t.path().join("kept").exists() && !t.path().join("orphan").exists());
    }

    #[tokio::test]
    async fn job_folders_changed_after_the_start_are_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let store = Store::in_memory().await.unwrap();
        std::fs::create_dir_all(home.path().join("jobs/before")).unwrap();
        let started = SystemTime::now() + std::time::Duration::from_secs(1);
        let removed = remove_orphan_job_folders(store.clone(), home.path(), started).await;
        assert_eq!(removed, [home.path().join("jobs/before")]);
        std::fs::create_dir_all(home.path().join("jobs/during")).unwrap();
        let earlier = SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(
            remove_orphan_job_folders(store, home.path(), earlier)
                .await
                .is_empty()
        );
        assert!(home.path().join("jobs/during").exists());
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
