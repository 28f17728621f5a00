//! The Kubernetes objects a job becomes, built without I/O: a ConfigMap with its code and small
//! inputs, and a `batch/v1` Job whose one container runs the command.
//!
//! Delivery (see [`super::delivery`] and docs/decisions.md): code and local inputs are mounted
//! read-only at `/berth/code` and `/berth/inputs/<name>`, from one ConfigMap when they fit
//! (owned by the Job, so deleting the Job deletes it), else fetched from the Berth server.

use std::collections::BTreeMap;
use std::path::Path;

use berth_core::conda::PythonEnv;
use berth_core::interpolate::interpolate;
use berth_core::job::{JobRecord, ResolvedInput, url_file_name};
use berth_core::spec::data::{DataType, InputMode};
pub use berth_core::spec::job::{DEFAULT_IMAGE, image_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::delivery::{
    BERTH_IN_IMAGE, Delivery, Download, Fetch, Part, deliver, size_init_containers,
};
use crate::workdir::JobDir;

/// The label every object Berth makes carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth");
/// The label naming the Berth job an object belongs to (its object name).
pub const JOB_LABEL: &str = "berth.dev/job";
/// The annotation holding the Berth job's own name.
pub const JOB_NAME_ANNOTATION: &str = "berth.dev/job-name";
/// The command's working folder (writable): a copy of the code, with `outputs/` and `logs/`.
pub const CODE_DIR: &str = "/berth/code";
/// Where the code snapshot is delivered (read-only), to be copied into [`CODE_DIR`].
pub const CODE_FILES_DIR: &str = "/berth/code-files";
/// Where a job's Python environment is built in its pod.
pub const ENV_DIR: &str = "/berth/env";
/// Where uv is in Berth's image.
pub const UV_IN_IMAGE: &str = "/usr/local/bin/uv";
pub use crate::pod_env::PYTHON_ENV_VAR;
/// The default image that provides the `berth` binary (at `/usr/local/bin/berth`) to pods.
pub fn berth_image() -> String {
    format!("berth:{}", env!("CARGO_PKG_VERSION"))
}

/// The Kubernetes name for a Berth name: lowercase DNS-1123, at most 52 characters (room for the
/// Job controller's pod suffix), with a hash of the original when it had to change.
pub fn object_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let trimmed = clean.trim_matches('-');
    if trimmed == name && name.len() <= 52 {
        return name.to_string();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let head: String = trimmed.chars().take(43).collect();
    format!("{}-{:08x}", head.trim_end_matches('-'), hash as u32)
}

/// The variables with which `berth` builds `env` under [`ENV_DIR`] in a pod.
pub fn env_build_vars(env: &PythonEnv) -> Result<[(String, String); 3], String> {
    Ok([
        (
            PYTHON_ENV_VAR.into(),
            serde_json::to_string(env).map_err(|e| e.to_string())?,
        ),
        ("BERTH_UV".into(), "/berth/bin/uv".into()),
        // The image's home may be read-only; the pod's volume is not.
        ("UV_CACHE_DIR".into(), format!("{ENV_DIR}/.uv-cache")),
    ])
}

/// Everything a job needs in the cluster.
#[derive(Debug)]
pub struct JobObjects {
    /// The files.
    pub config_map: ConfigMap,
    /// The Job.
    pub job: Job,
    /// Whether its pod fetches code and inputs from the Berth server (too large for the
    /// ConfigMap).
    pub fetches_files: bool,
    /// Whether its pod downloads URL inputs before the command starts.
    pub downloads_urls: bool,
}

/// Builds the ConfigMap and Job for `job` in `namespace`, reading its code snapshot and local
/// inputs from disk. With `server_url`, the command runs under `berth job-run`, which uploads
/// the outputs to that server when it ends, and files too large for the ConfigMap are fetched
/// from it. Errors say which input or file is the problem.
pub fn build(
    job: &JobRecord,
    namespace: &str,
    server_url: Option<&str>,
    berth_image: &str,
) -> Result<JobObjects, String> {
    let name = object_name(&job.name);
    let server_url = server_url.map(|u| u.trim_end_matches('/'));
    let mut parts = vec![Part {
        name: "code".into(),
        root: JobDir::new(&job.workdir).code(),
        volume: "code".into(),
        mount: CODE_FILES_DIR.into(),
    }];
    let mut downloads = Vec::new();
    let mut inputs = BTreeMap::new();
    for (input, resolved) in &job.inputs {
        let seen = match resolved {
            ResolvedInput::Literal { value } => value.clone(),
            ResolvedInput::Url { url, mode, .. } if *mode == InputMode::Direct => url.clone(),
            ResolvedInput::Url { url, data_type, .. } => {
                let mount = format!("/berth/inputs/{input}");
                downloads.push(Download {
                    url: url.clone(),
                    volume: format!("url-{}", downloads.len()),
                    mount: mount.clone(),
                });
                if *data_type == DataType::UriFile {
                    format!("{mount}/{}", url_file_name(url))
                } else {
                    mount
                }
            }
            ResolvedInput::Path {
                path, data_type, ..
            } => {
                let src = Path::new(path);
                let mount = format!("/berth/inputs/{input}");
                let seen = if *data_type == DataType::UriFile || src.is_file() {
                    let file = src
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_else(|| input.clone());
                    format!("{mount}/{file}")
                } else {
                    mount.clone()
                };
                parts.push(Part {
                    name: format!("inputs/{input}"),
                    root: src.to_path_buf(),
                    volume: format!("input-{}", parts.len()),
                    mount,
                });
                seen
            }
        };
        inputs.insert(input.clone(), seen);
    }
    let files = format!("{name}-files");
    let fetch = match (server_url, &job.upload_token) {
        (Some(url), Some(token)) => Some(Fetch {
            url: format!("{url}/api/jobs/{}/files", job.name),
            token: token.clone(),
        }),
        _ => None,
    };
    let mut delivery = deliver(
        &parts,
        &files,
        fetch.as_ref(),
        berth_image,
        "the job's code and local inputs",
        "attach the compute with --server-url so pods fetch them from the Berth server, pass large data as a URL input with `mode: direct`, or keep it in the image",
    )?;
    let mut outputs = BTreeMap::new();
    let mut output_dirs = Vec::new();
    for (output, o) in &job.outputs {
        let dir = format!("/berth/outputs/{output}");
        let seen = if o.data_type == DataType::UriFile {
            let file = Path::new(&o.path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| output.clone());
            format!("{dir}/{file}")
        } else {
            dir.clone()
        };
        output_dirs.push(dir);
        outputs.insert(output.clone(), seen);
    }
    let command = interpolate(&job.spec.command, &inputs, &outputs).map_err(|e| e.to_string())?;

    let mut env: BTreeMap<String, String> = job.spec.environment_variables.clone();
    for (k, v) in [
        ("AZUREML_RUN_ID", job.name.as_str()),
        ("AZUREML_EXPERIMENT_NAME", &job.experiment_name),
        ("AZUREML_ARM_PROJECT_NAME", &job.experiment_name),
        ("AZUREML_COMPUTE", &job.compute),
        ("AZUREML_INSTANCE_TYPE", &job.instance_type.name),
        ("PYTHONUNBUFFERED", "1"),
    ] {
        env.insert(k.into(), v.into());
    }
    for (k, v) in &inputs {
        env.insert(format!("AZURE_ML_INPUT_{k}"), v.clone());
    }
    for (k, v) in &outputs {
        env.insert(format!("AZURE_ML_OUTPUT_{k}"), v.clone());
    }

    let labels = json!({ MANAGED_BY.0: MANAGED_BY.1, JOB_LABEL: name });
    let fetches_files = delivery.init.is_some();
    delivery.download(berth_image, &downloads);
    let Delivery {
        data,
        mut volumes,
        mut mounts,
        init: fetcher,
    } = delivery;
    for (i, dir) in output_dirs.iter().enumerate() {
        let volume = format!("output-{i}");
        volumes.push(json!({"name": volume, "emptyDir": {}}));
        mounts.push(json!({"name": volume, "mountPath": dir}));
    }
    let it = &job.instance_type;
    let mut requests =
        json!({"cpu": it.requests.cpu.to_string(), "memory": it.requests.memory.to_string()});
    let mut limits =
        json!({"cpu": it.limits.cpu.to_string(), "memory": it.limits.memory.to_string()});
    let gpus = it.limits.gpus.max(it.requests.gpus);
    if gpus > 0 {
        // Extended resources are set in limits; Kubernetes copies them to requests.
        limits["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    if it.limits.cpu.is_zero() {
        limits.as_object_mut().map(|l| l.remove("cpu"));
    }
    if it.limits.memory.is_zero() {
        limits.as_object_mut().map(|l| l.remove("memory"));
    }
    if it.requests.cpu.is_zero() {
        requests.as_object_mut().map(|r| r.remove("cpu"));
    }
    // The command runs under `berth job-run`, copied in from Berth's image: it copies the
    // code into a writable working folder with outputs/ and logs/, builds the conda file's
    // environment (with uv, also from Berth's image), and uploads what the job wrote.
    let upload = match (server_url, &job.upload_token) {
        (Some(url), Some(token)) => {
            env.insert("BERTH_UPLOAD_TOKEN".into(), token.clone());
            Some(url)
        }
        _ => None,
    };
    let python = job.environment.as_ref().and_then(|e| e.python.as_ref());
    let mut copied = vec![BERTH_IN_IMAGE];
    if let Some(p) = python {
        env.extend(env_build_vars(p)?);
        copied.push(UV_IN_IMAGE);
        volumes.push(json!({"name": "berth-env", "emptyDir": {}}));
        mounts.push(json!({"name": "berth-env", "mountPath": ENV_DIR}));
    }
    volumes.push(json!({"name": "workdir", "emptyDir": {}}));
    mounts.push(json!({"name": "workdir", "mountPath": CODE_DIR}));
    volumes.push(json!({"name": "berth-bin", "emptyDir": {}}));
    mounts.push(json!({"name": "berth-bin", "mountPath": "/berth/bin"}));
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let mut init: Vec<Value> = fetcher.into_iter().collect();
    let mut cp: Vec<&str> = vec!["cp"];
    cp.extend(&copied);
    cp.push("/berth/bin/");
    init.push(json!({
        "name": "berth-bin", "image": berth_image,
        "command": cp,
        "volumeMounts": [{"name": "berth-bin", "mountPath": "/berth/bin"}],
    }));
    let mut argv: Vec<String> = vec![
        "/berth/bin/berth".into(),
        "job-run".into(),
        "--code-from".into(),
        CODE_FILES_DIR.into(),
    ];
    if python.is_some() {
        argv.extend(["--env-dir".into(), ENV_DIR.into()]);
    }
    if let Some(url) = upload {
        argv.extend([
            "--upload-url".into(),
            format!("{url}/api/jobs/{}/uploads", job.name),
        ]);
        for (o, dir) in job.outputs.keys().zip(&output_dirs) {
            argv.extend(["--output-dir".into(), format!("{o}={dir}")]);
        }
    }
    argv.extend(["--".into(), "sh".into(), "-c".into(), command]);
    size_init_containers(&mut init, &requests, &limits);
    let mut spec = json!({
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "enableServiceLinks": false,
                "automountServiceAccountToken": false,
                "nodeSelector": it.node_selector,
                "initContainers": init,
                "containers": [{
                    "name": "job",
                    "image": image_for(job.spec.environment.as_ref()),
                    "command": argv,
                    "workingDir": CODE_DIR,
                    "env": env,
                    "resources": {"requests": requests, "limits": limits},
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            }
        }
    });
    if let Some(t) = job.spec.timeout_seconds {
        spec["activeDeadlineSeconds"] = json!(t);
    }
    let job_obj = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {JOB_NAME_ANNOTATION: job.name, "berth.dev/compute": job.compute},
        },
        "spec": spec,
    });
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": files, "namespace": namespace, "labels": labels},
        "binaryData": data,
    });
    Ok(JobObjects {
        config_map: serde_json::from_value(cm).map_err(|e| e.to_string())?,
        job: serde_json::from_value(job_obj).map_err(|e| e.to_string())?,
        fetches_files,
        downloads_urls: !downloads.is_empty(),
    })
}

/// Standard base64 with padding (the API's encoding for `binaryData`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
