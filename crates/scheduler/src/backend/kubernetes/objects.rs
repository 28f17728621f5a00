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
use berth_core::spec::instance_type::InstanceType;
pub use berth_core::spec::job::{DEFAULT_IMAGE, image_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::delivery::{
    BERTH_IN_IMAGE, Delivery, Download, Fetch, Part, deliver, size_init_containers,
};
use super::error::{KubeError, object};
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
pub fn env_build_vars(env: &PythonEnv) -> Result<[(String, String); 3], KubeError> {
    Ok([
        (
            PYTHON_ENV_VAR.into(),
            serde_json::to_string(env).map_err(object)?,
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
) -> Result<JobObjects, KubeError> {
    let server_url = server_url.map(|u| u.trim_end_matches('/'));
    let inputs = inputs_of(job);
    let mut delivery = delivery_of(job, &inputs, server_url, berth_image)?;
    let outputs = outputs_of(job);
    let command = interpolate(&job.spec.command, &inputs.seen, &outputs.seen).map_err(object)?;
    let mut env = job_env(job, &inputs.seen, &outputs.seen, server_url);
    let fetches_files = delivery.init.is_some();
    delivery.download(berth_image, &inputs.downloads);
    let Delivery {
        data,
        mut volumes,
        mut mounts,
        init: fetcher,
    } = delivery;
    for (i, dir) in outputs.dirs.iter().enumerate() {
        let volume = format!("output-{i}");
        volumes.push(json!({"name": volume, "emptyDir": {}}));
        mounts.push(json!({"name": volume, "mountPath": dir}));
    }
    let (requests, limits) = resources_of(&job.instance_type);
    let upload = server_url.filter(|_| job.upload_token.is_some());
    env.extend(
        job.upload_token
            .iter()
            .filter(|_| upload.is_some())
            .map(|t| ("BERTH_UPLOAD_TOKEN".to_string(), t.clone())),
    );
    let python = job.environment.as_ref().and_then(|e| e.python.as_ref());
    if let Some(p) = python {
        env.extend(env_build_vars(p)?);
    }
    let run = job_run(
        job,
        python.is_some(),
        upload,
        &outputs.dirs,
        command,
        berth_image,
    );
    volumes.extend(run.volumes);
    mounts.extend(run.mounts);
    let mut init: Vec<Value> = fetcher.into_iter().collect();
    init.push(run.init);
    size_init_containers(&mut init, &requests, &limits);
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    let pod = json!({
        "restartPolicy": "Never",
        "enableServiceLinks": false,
        "automountServiceAccountToken": false,
        "nodeSelector": job.instance_type.node_selector,
        "initContainers": init,
        "containers": [{
            "name": "job",
            "image": image_for(job.spec.environment.as_ref()),
            "command": run.argv,
            "workingDir": CODE_DIR,
            "env": env,
            "resources": {"requests": requests, "limits": limits},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    });
    let (config_map, job_obj) = objects(job, namespace, pod, data)?;
    Ok(JobObjects {
        config_map,
        job: job_obj,
        fetches_files,
        downloads_urls: !inputs.downloads.is_empty(),
    })
}

/// How the code and local inputs reach the pod: in the Job's ConfigMap, or fetched from the
/// Berth server when they are too large for one.
fn delivery_of(
    job: &JobRecord,
    inputs: &PodInputs,
    server_url: Option<&str>,
    berth_image: &str,
) -> Result<Delivery, KubeError> {
    let fetch = match (server_url, &job.upload_token) {
        (Some(url), Some(token)) => Some(Fetch {
            url: format!("{url}/api/jobs/{}/files", job.name),
            token: token.clone(),
        }),
        _ => None,
    };
    deliver(
        &inputs.parts,
        &format!("{}-files", object_name(&job.name)),
        fetch.as_ref(),
        berth_image,
        "the job's code and local inputs",
        "attach the compute with --server-url so pods fetch them from the Berth server, pass large data as a URL input with `mode: direct`, or keep it in the image",
    )
}

/// The Job around `pod` (its spec), and the ConfigMap of the files that travel in one.
fn objects(
    job: &JobRecord,
    namespace: &str,
    pod: Value,
    data: BTreeMap<String, String>,
) -> Result<(ConfigMap, Job), KubeError> {
    let name = object_name(&job.name);
    let labels = json!({ MANAGED_BY.0: MANAGED_BY.1, JOB_LABEL: name });
    let mut spec = json!({
        "backoffLimit": 0,
        "template": {"metadata": {"labels": labels}, "spec": pod},
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
        "metadata": {"name": format!("{name}-files"), "namespace": namespace, "labels": labels},
        "binaryData": data,
    });
    Ok((
        serde_json::from_value(cm).map_err(object)?,
        serde_json::from_value(job_obj).map_err(object)?,
    ))
}

/// How a job's inputs reach its pod: files to deliver, URLs to download, and the path (or
/// value) the command sees for each.
struct PodInputs {
    parts: Vec<Part>,
    downloads: Vec<Download>,
    seen: BTreeMap<String, String>,
}

fn inputs_of(job: &JobRecord) -> PodInputs {
    let mut parts = vec![Part {
        name: "code".into(),
        root: JobDir::new(&job.workdir).code(),
        volume: "code".into(),
        mount: CODE_FILES_DIR.into(),
    }];
    let mut downloads = Vec::new();
    let mut seen = BTreeMap::new();
    for (input, resolved) in &job.inputs {
        let path = match resolved {
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
                let path = if *data_type == DataType::UriFile || src.is_file() {
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
                path
            }
        };
        seen.insert(input.clone(), path);
    }
    PodInputs {
        parts,
        downloads,
        seen,
    }
}

/// Where a job's outputs are written in its pod: the folder per output, and the path the
/// command sees for each.
struct PodOutputs {
    dirs: Vec<String>,
    seen: BTreeMap<String, String>,
}

fn outputs_of(job: &JobRecord) -> PodOutputs {
    let mut out = PodOutputs {
        dirs: Vec::new(),
        seen: BTreeMap::new(),
    };
    for (output, o) in &job.outputs {
        let dir = format!("/berth/outputs/{output}");
        let path = if o.data_type == DataType::UriFile {
            let file = Path::new(&o.path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| output.clone());
            format!("{dir}/{file}")
        } else {
            dir.clone()
        };
        out.dirs.push(dir);
        out.seen.insert(output.clone(), path);
    }
    out
}

/// The variables a job's command sees, as Azure ML sets them; its run's `MLFLOW_*` ones when
/// the pod can reach the server.
fn job_env(
    job: &JobRecord,
    inputs: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
    server_url: Option<&str>,
) -> BTreeMap<String, String> {
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
    for (k, v) in inputs {
        env.insert(format!("AZURE_ML_INPUT_{k}"), v.clone());
    }
    for (k, v) in outputs {
        env.insert(format!("AZURE_ML_OUTPUT_{k}"), v.clone());
    }
    if let Some(url) = server_url {
        job.tracking_env(url, &mut env);
    }
    env
}

/// The instance type as container requests and limits; GPUs are limits (Kubernetes copies
/// extended resources to requests) and a zero is left out.
fn resources_of(it: &InstanceType) -> (Value, Value) {
    let mut requests =
        json!({"cpu": it.requests.cpu.to_string(), "memory": it.requests.memory.to_string()});
    let mut limits =
        json!({"cpu": it.limits.cpu.to_string(), "memory": it.limits.memory.to_string()});
    let gpus = it.limits.gpus.max(it.requests.gpus);
    if gpus > 0 {
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
    (requests, limits)
}

/// The command under `berth job-run` and what it needs: the binaries copied in from Berth's
/// image, a writable working folder, and a volume for the environment when there is one.
struct JobRun {
    argv: Vec<String>,
    init: Value,
    volumes: Vec<Value>,
    mounts: Vec<Value>,
}

/// `berth job-run` copies the code into a writable working folder with outputs/ and logs/,
/// builds the conda file's environment (with uv from Berth's image), runs the command, and
/// uploads what the job wrote when there is a server to upload to.
fn job_run(
    job: &JobRecord,
    builds_env: bool,
    upload: Option<&str>,
    output_dirs: &[String],
    command: String,
    berth_image: &str,
) -> JobRun {
    let mut copied = vec![BERTH_IN_IMAGE];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if builds_env {
        copied.push(UV_IN_IMAGE);
        volumes.push(json!({"name": "berth-env", "emptyDir": {}}));
        mounts.push(json!({"name": "berth-env", "mountPath": ENV_DIR}));
    }
    volumes.push(json!({"name": "workdir", "emptyDir": {}}));
    mounts.push(json!({"name": "workdir", "mountPath": CODE_DIR}));
    volumes.push(json!({"name": "berth-bin", "emptyDir": {}}));
    mounts.push(json!({"name": "berth-bin", "mountPath": "/berth/bin"}));
    let mut cp: Vec<&str> = vec!["cp"];
    cp.extend(&copied);
    cp.push("/berth/bin/");
    let init = json!({
        "name": "berth-bin", "image": berth_image,
        "command": cp,
        "volumeMounts": [{"name": "berth-bin", "mountPath": "/berth/bin"}],
    });
    let mut argv: Vec<String> = vec![
        "/berth/bin/berth".into(),
        "job-run".into(),
        "--code-from".into(),
        CODE_FILES_DIR.into(),
    ];
    if builds_env {
        argv.extend(["--env-dir".into(), ENV_DIR.into()]);
    }
    if let Some(url) = upload {
        argv.extend([
            "--upload-url".into(),
            format!("{url}/api/jobs/{}/uploads", job.name),
        ]);
        for (o, dir) in job.outputs.keys().zip(output_dirs) {
            argv.extend(["--output-dir".into(), format!("{o}={dir}")]);
        }
    }
    argv.extend(["--".into(), "sh".into(), "-c".into(), command]);
    JobRun {
        argv,
        init,
        volumes,
        mounts,
    }
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
