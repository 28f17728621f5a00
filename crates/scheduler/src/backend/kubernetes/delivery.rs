//! How a pod gets the files it needs from the Berth server's disk (a job's code and local
//! inputs, a deployment's scoring code and model): in a ConfigMap when they fit in one
//! (etcd's 1 MiB limit), else fetched by an init container (`berth fetch`) from the Berth
//! server into emptyDir volumes, with a token that opens only that job's or revision's files.
//! See docs/decisions.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::error::KubeError;
use crate::workdir::list_files;

/// The most a ConfigMap may carry (etcd's limit is 1 MiB, with room for metadata).
pub const CONFIGMAP_LIMIT: u64 = 900 * 1024;
/// Where the `berth` binary is in Berth's image.
pub const BERTH_IN_IMAGE: &str = "/usr/local/bin/berth";
/// The init container that runs `berth fetch`.
pub const FETCH_CONTAINER: &str = "berth-fetch";
pub use crate::pod_env::FETCH_TOKEN_ENV;

/// A folder or file from this machine that a pod needs, and where it lands in the pod.
#[derive(Clone, Debug)]
pub struct Part {
    /// Its name in the server's file listing (`code`, `model`, `inputs/<name>`).
    pub name: String,
    /// The folder (or single file) on the Berth server's machine.
    pub root: PathBuf,
    /// The volume's name in the pod.
    pub volume: String,
    /// Where it is mounted in the pod; a single file lands inside it under its own name.
    pub mount: String,
}

/// Where a pod fetches its files when they do not fit a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The listing URL; each file is at `<url>/<part>/<path>`.
    pub url: String,
    /// The bearer token for that URL.
    pub token: String,
}

/// The volumes, mounts, init container and ConfigMap data that deliver some parts.
#[derive(Debug, Default)]
pub struct Delivery {
    /// ConfigMap `binaryData` (base64), empty when the files are fetched.
    pub data: BTreeMap<String, String>,
    /// Pod volumes.
    pub volumes: Vec<Value>,
    /// The main container's mounts (read-only).
    pub mounts: Vec<Value>,
    /// The init container that fetches, when the files are fetched.
    pub init: Option<Value>,
}

/// Gives Berth's init containers the main container's CPU and memory: a pod's request is the
/// larger of any init container's and the sum of its containers', so this costs nothing more,
/// and a namespace whose ResourceQuota or LimitRange demands requests and limits accepts them.
/// GPUs stay with the main container.
pub fn size_init_containers(init: &mut [Value], requests: &Value, limits: &Value) {
    let mut limits = limits.clone();
    if let Some(l) = limits.as_object_mut() {
        l.remove("nvidia.com/gpu");
    }
    for c in init {
        c["resources"] = json!({"requests": requests, "limits": limits});
    }
}

/// A URL the init container downloads into `mount` before the main container starts (an input
/// in `download` mode), under the name [`berth_core::job::url_file_name`] gives it.
#[derive(Clone, Debug)]
pub struct Download {
    /// The URL.
    pub url: String,
    /// The volume's name in the pod.
    pub volume: String,
    /// Where it is mounted.
    pub mount: String,
}

impl Delivery {
    /// Adds `downloads`: an emptyDir each, fetched by the init container (made if there is
    /// none yet, in `berth_image`).
    pub fn download(&mut self, berth_image: &str, downloads: &[Download]) {
        if downloads.is_empty() {
            return;
        }
        let init = self.init.get_or_insert_with(|| {
            json!({
                "name": FETCH_CONTAINER,
                "image": berth_image,
                "command": [BERTH_IN_IMAGE, "fetch"],
                "volumeMounts": [],
            })
        });
        for d in downloads {
            self.volumes.push(json!({"name": d.volume, "emptyDir": {}}));
            self.mounts
                .push(json!({"name": d.volume, "mountPath": d.mount, "readOnly": true}));
            if let Some(m) = init["volumeMounts"].as_array_mut() {
                m.push(json!({"name": d.volume, "mountPath": d.mount}));
            }
            if let Some(c) = init["command"].as_array_mut() {
                c.extend([json!("--download"), json!(format!("{}={}", d.mount, d.url))]);
            }
        }
    }
}

/// Delivers `parts`: in ConfigMap `config_map` when they fit, else by `fetch`. Without a
/// `fetch`, too much data is refused with `advice`. `what` names the files in messages.
pub fn deliver(
    parts: &[Part],
    config_map: &str,
    fetch: Option<&Fetch>,
    berth_image: &str,
    what: &str,
    advice: &str,
) -> Result<Delivery, KubeError> {
    let mut listed = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for part in parts {
        let files = list_files(&part.root).map_err(|e| {
            KubeError::Object(format!(
                "cannot read {} ({}): {e}",
                part.root.display(),
                part.name
            ))
        })?;
        total += files.iter().map(|(_, size)| size).sum::<u64>();
        listed.push(files);
    }
    let mut out = Delivery::default();
    if total <= CONFIGMAP_LIMIT {
        for (part, files) in parts.iter().zip(&listed) {
            let mut items = Vec::with_capacity(files.len());
            for (rel, _) in files {
                let path = if part.root.is_file() {
                    part.root.clone()
                } else {
                    part.root.join(rel)
                };
                let bytes = std::fs::read(&path).map_err(|e| {
                    KubeError::Object(format!("cannot read {}: {e}", path.display()))
                })?;
                let key = format!("f{}", out.data.len());
                out.data.insert(key.clone(), super::base64(&bytes));
                items.push(json!({"key": key, "path": rel}));
            }
            out.volumes.push(
                json!({"name": part.volume, "configMap": {"name": config_map, "items": items}}),
            );
            out.mounts
                .push(json!({"name": part.volume, "mountPath": part.mount, "readOnly": true}));
        }
        return Ok(out);
    }
    let Some(fetch) = fetch else {
        return Err(KubeError::Refused(format!(
            "{what} are {} KiB, more than a ConfigMap carries to a Kubernetes compute ({} KiB); {advice}",
            total.div_ceil(1024),
            CONFIGMAP_LIMIT / 1024
        )));
    };
    let mut command = vec![
        BERTH_IN_IMAGE.to_string(),
        "fetch".into(),
        "--url".into(),
        fetch.url.clone(),
    ];
    let mut init_mounts = Vec::with_capacity(parts.len());
    for part in parts {
        out.volumes
            .push(json!({"name": part.volume, "emptyDir": {}}));
        out.mounts
            .push(json!({"name": part.volume, "mountPath": part.mount, "readOnly": true}));
        init_mounts.push(json!({"name": part.volume, "mountPath": part.mount}));
        command.extend(["--into".into(), format!("{}={}", part.name, part.mount)]);
    }
    out.init = Some(json!({
        "name": FETCH_CONTAINER,
        "image": berth_image,
        "command": command,
        "env": [{"name": FETCH_TOKEN_ENV, "value": fetch.token}],
        "volumeMounts": init_mounts,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parts(root: &std::path::Path) -> Vec<Part> {
        vec![
            Part {
                name: "code".into(),
                root: root.join("code"),
                volume: "code".into(),
                mount: "/berth/code".into(),
            },
            Part {
                name: "inputs/big".into(),
                root: root.join("big.bin"),
                volume: "input-1".into(),
                mount: "/berth/inputs/big".into(),
            },
        ]
    }

    #[test]
    fn small_files_travel_in_the_configmap() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("code/sub")).unwrap();
        std::fs::write(t.path().join("code/sub/a.py"), "print(1)").unwrap();
        std::fs::write(t.path().join("big.bin"), "tiny").unwrap();
        let d = deliver(&parts(t.path()), "cm", None, "b", "x", "y").unwrap();
        assert_eq!(d.data.len(), 2);
        assert!(d.init.is_none());
        assert_eq!(d.volumes[0]["configMap"]["items"][0]["path"], "sub/a.py");
        assert_eq!(d.volumes[1]["configMap"]["items"][0]["path"], "big.bin");
    }

    #[test]
    fn large_files_are_fetched_by_an_init_container_or_refused_with_advice() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("code")).unwrap();
        std::fs::write(t.path().join("big.bin"), vec![0u8; 1024 * 1024]).unwrap();
        let e = deliver(&parts(t.path()), "cm", None, "b", "the files", "do X")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the files are 1024 KiB, more than a ConfigMap carries to a Kubernetes compute (900 KiB); do X"
        );
        let fetch = Fetch {
            url: "http://berth:8700/api/jobs/j/files".into(),
            token: "tok".into(),
        };
        let d = deliver(
            &parts(t.path()),
            "cm",
            Some(&fetch),
            "reg/berth:1",
            "x",
            "y",
        )
        .unwrap();
        assert!(d.data.is_empty());
        assert_eq!(d.volumes[1]["emptyDir"], json!({}));
        assert_eq!(d.mounts[1]["readOnly"], true);
        let init = d.init.unwrap();
        assert_eq!(init["image"], "reg/berth:1");
        assert_eq!(
            init["command"],
            json!([
                BERTH_IN_IMAGE,
                "fetch",
                "--url",
                "http://berth:8700/api/jobs/j/files",
                "--into",
                "code=/berth/code",
                "--into",
                "inputs/big=/berth/inputs/big"
            ])
        );
        assert_eq!(init["env"][0]["value"], "tok");
    }

    #[test]
    fn downloads_join_the_fetch_or_get_their_own_init_container() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("code")).unwrap();
        std::fs::write(t.path().join("big.bin"), "tiny").unwrap();
        let mut d = deliver(&parts(t.path()), "cm", None, "b", "x", "y").unwrap();
        let url = Download {
            url: "https://h/d.csv?a=b".into(),
            volume: "url-2".into(),
            mount: "/berth/inputs/d".into(),
        };
        d.download("reg/berth:1", std::slice::from_ref(&url));
        let init = d.init.unwrap();
        assert_eq!(
            init["command"],
            json!([
                BERTH_IN_IMAGE,
                "fetch",
                "--download",
                "/berth/inputs/d=https://h/d.csv?a=b"
            ])
        );
        assert!(init.get("env").is_none());
        assert_eq!(d.volumes[2]["emptyDir"], json!({}));
    }
}
