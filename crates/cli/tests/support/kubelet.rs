//! A test kubelet for the control plane in `../shared/k8s-testenv` (which has none): it
//! registers Nodes with the capacity and labels a test gives, and for each Pod bound to one of
//! them runs the first container's command as a local process (volumes become folders under
//! the kubelet's own folder, and their mount paths are rewritten in the command, environment
//! and working folder), patches the Pod's status (Running, then Succeeded or Failed with the
//! exit code) and serves the container's log to the API server's pods/log proxy over HTTPS.
//! A Pod being deleted has its process killed and is removed, as a kubelet does.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A Node to register.
pub struct NodeSpec {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub gpus: u32,
    pub labels: BTreeMap<String, String>,
}

impl NodeSpec {
    pub fn new(name: &str, cpu: &str, memory: &str, gpus: u32, labels: &[(&str, &str)]) -> Self {
        NodeSpec {
            name: name.into(),
            cpu: cpu.into(),
            memory: memory.into(),
            gpus,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

struct Running {
    child: Option<Child>,
    log: PathBuf,
    done: bool,
}

#[derive(Default)]
struct Shared {
    nodes: Vec<String>,
    pods: HashMap<String, Running>,
    /// Namespaces whose pods are only marked running and ready, with no process.
    simulated: Vec<String>,
}

/// The kubelet; stops when dropped.
pub struct Kubelet {
    client: Client,
    shared: Arc<Mutex<Shared>>,
    dir: PathBuf,
    log_port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Kubelet {
    /// Starts serving logs and watching for Pods; `dir` holds the pods' folders.
    pub async fn start(client: Client, dir: &Path) -> Kubelet {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log_port = listener.local_addr().unwrap().port();
        let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        let config =
            berth_router::tls::server_config(&tls.join("cert.pem"), &tls.join("key.pem")).unwrap();
        let logs = axum::Router::new()
            .route(
                "/containerLogs/{ns}/{pod}/{container}",
                axum::routing::get(serve_log),
            )
            .with_state(Arc::clone(&shared));
        let mut tasks = vec![tokio::spawn(berth_router::tls::serve_tls(
            listener,
            logs,
            config,
            std::future::pending(),
        ))];
        let (c, s, d) = (client.clone(), Arc::clone(&shared), dir.to_path_buf());
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = sync(&c, &s, &d).await {
                    eprintln!("test kubelet: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Kubelet {
            client,
            shared,
            dir: dir.to_path_buf(),
            log_port,
            tasks,
        }
    }

    /// Registers a Node (Ready, with the given allocatable resources and labels).
    pub async fn add_node(&self, node: NodeSpec) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut labels = node.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), node.name.clone());
        let obj: Node = serde_json::from_value(json!({
            "metadata": {"name": node.name, "labels": labels},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &obj).await.unwrap();
        let mut resources = json!({"cpu": node.cpu, "memory": node.memory, "pods": "110"});
        if node.gpus > 0 {
            resources["nvidia.com/gpu"] = json!(node.gpus.to_string());
        }
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test kubelet"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
        }});
        nodes
            .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        // The API server taints new Nodes not-ready; the (disabled) node lifecycle controller
        // would lift it once the Node reports Ready.
        nodes
            .patch(
                &node.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"taints": null}})),
            )
            .await
            .unwrap();
        self.shared.lock().unwrap().nodes.push(node.name);
    }

    /// Pods in `namespace` are marked running and ready without running anything (for
    /// components whose image is not a local program, such as the extension's).
    pub fn simulate(&self, namespace: &str) {
        self.shared.lock().unwrap().simulated.push(namespace.into());
    }

    /// Adds a hostPath PersistentVolume of `size` (the test cluster has no provisioner), so a
    /// claim without a storage class binds to it.
    pub async fn add_volume(&self, name: &str, size: &str) {
        use k8s_openapi::api::core::v1::PersistentVolume;
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        let path = self.dir.join("volumes").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": path}, "persistentVolumeReclaimPolicy": "Delete"},
        }))
        .unwrap();
        pvs.create(&PostParams::default(), &pv).await.unwrap();
    }

    /// The folder the kubelet's pods run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(mut s) = self.shared.lock() {
            for (_, r) in s.pods.iter_mut() {
                if let Some(c) = r.child.as_mut() {
                    let _ = c.start_kill();
                }
            }
        }
    }
}

async fn sync(client: &Client, shared: &Arc<Mutex<Shared>>, dir: &Path) -> Result<(), String> {
    let nodes = shared.lock().unwrap().nodes.clone();
    if nodes.is_empty() {
        return Ok(());
    }
    let all: Api<Pod> = Api::all(client.clone());
    let list = all
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    for pod in list.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if !node.is_some_and(|n| nodes.contains(&n)) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let k = key(&ns, &name);
        seen.push(k.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(mut r) = shared.lock().unwrap().pods.remove(&k)
                && let Some(c) = r.child.as_mut()
            {
                let _ = c.start_kill();
            }
            let _ = pods
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let known = shared.lock().unwrap().pods.contains_key(&k);
        if !known {
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            if phase.as_deref().is_some_and(|p| p != "Pending") {
                continue;
            }
            let simulated = shared.lock().unwrap().simulated.contains(&ns);
            let started = if simulated {
                Ok(Running {
                    child: None,
                    log: dir.join("simulated.log"),
                    done: false,
                })
            } else {
                start(client, &pod, &dir.join(&ns).join(&name)).await
            };
            match started {
                Ok(r) => {
                    shared.lock().unwrap().pods.insert(k.clone(), r);
                    patch(&pods, &name, running_status()).await;
                }
                Err(e) => {
                    patch(
                        &pods,
                        &name,
                        waiting_status("CreateContainerConfigError", &e),
                    )
                    .await;
                }
            }
            continue;
        }
        let exited = {
            let mut s = shared.lock().unwrap();
            let r = s.pods.get_mut(&k).unwrap();
            match (r.done, r.child.as_mut().map(|c| c.try_wait())) {
                (false, Some(Ok(Some(status)))) => {
                    r.done = true;
                    Some(status.code().unwrap_or(137))
                }
                _ => None,
            }
        };
        if let Some(code) = exited {
            patch(&pods, &name, ended_status(code)).await;
        }
    }
    let mut s = shared.lock().unwrap();
    let gone: Vec<String> = s
        .pods
        .keys()
        .filter(|k| !seen.contains(k))
        .cloned()
        .collect();
    for k in gone {
        if let Some(mut r) = s.pods.remove(&k)
            && let Some(c) = r.child.as_mut()
        {
            let _ = c.start_kill();
        }
    }
    Ok(())
}

async fn patch(pods: &Api<Pod>, name: &str, status: Value) {
    let _ = pods
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await;
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn running_status() -> Value {
    json!({
        "phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1", "startTime": now(),
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        "containerStatuses": [{"name": "job", "ready": true, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"running": {"startedAt": now()}}}],
    })
}

fn waiting_status(reason: &str, message: &str) -> Value {
    json!({
        "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}}}],
    })
}

fn ended_status(code: i32) -> Value {
    json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0, "image": "local", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now(), "finishedAt": now()}}}],
    })
}

/// Materializes the pod's volumes and starts its first container's command.
async fn start(client: &Client, pod: &Pod, dir: &Path) -> Result<Running, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let container = spec.containers.first().ok_or("no container")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut volumes: HashMap<String, PathBuf> = HashMap::new();
    for v in spec.volumes.iter().flatten() {
        let local = dir.join(format!("vol-{}", v.name));
        std::fs::create_dir_all(&local).map_err(|e| e.to_string())?;
        if let Some(cm) = &v.config_map {
            let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let found = maps
                .get(&cm.name)
                .await
                .map_err(|e| format!("configmap {}: {e}", cm.name))?;
            let binary = found.binary_data.unwrap_or_default();
            let text = found.data.unwrap_or_default();
            for item in cm.items.iter().flatten() {
                let bytes = match (binary.get(&item.key), text.get(&item.key)) {
                    (Some(b), _) => b.0.clone(),
                    (None, Some(t)) => t.clone().into_bytes(),
                    _ => return Err(format!("configmap {} has no key {}", cm.name, item.key)),
                };
                let path = local.join(&item.path);
                std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
                std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            }
        }
        volumes.insert(v.name.clone(), local);
    }
    let mut mounts: Vec<(String, String)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m.mount_path.clone(),
                volumes.get(&m.name)?.display().to_string(),
            ))
        })
        .collect();
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let map = |s: &str| {
        mounts.iter().fold(s.to_string(), |acc, (from, to)| {
            acc.replace(from.as_str(), to)
        })
    };
    let argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| map(a))
        .collect();
    let (program, args) = argv.split_first().ok_or("no command")?;
    let log = dir.join("container.log");
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .kill_on_drop(true);
    if let Some(wd) = &container.working_dir {
        cmd.current_dir(map(wd));
    }
    for e in container.env.iter().flatten() {
        cmd.env(&e.name, map(e.value.as_deref().unwrap_or_default()));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    Ok(Running {
        child: Some(child),
        log,
        done: false,
    })
}

#[derive(serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// GET /containerLogs/{ns}/{pod}/{container}: the log, followed until the process ends.
async fn serve_log(
    axum::extract::State(shared): axum::extract::State<Arc<Mutex<Shared>>>,
    axum::extract::Path((ns, pod, _container)): axum::extract::Path<(String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Result<axum::body::Body, axum::http::StatusCode> {
    let k = key(&ns, &pod);
    let log = shared
        .lock()
        .unwrap()
        .pods
        .get(&k)
        .map(|r| r.log.clone())
        .ok_or(axum::http::StatusCode::NOT_FOUND)?;
    if !q.follow {
        return Ok(axum::body::Body::from(
            std::fs::read(&log).unwrap_or_default(),
        ));
    }
    let stream = futures_util::stream::unfold((0u64, false), move |(offset, finished)| {
        let (shared, k, log) = (Arc::clone(&shared), k.clone(), log.clone());
        async move {
            if finished {
                return None;
            }
            loop {
                let bytes = std::fs::read(&log).unwrap_or_default();
                if (bytes.len() as u64) > offset {
                    let chunk = bytes[offset as usize..].to_vec();
                    let next = bytes.len() as u64;
                    return Some((Ok::<_, std::io::Error>(chunk), (next, false)));
                }
                let done = shared.lock().unwrap().pods.get(&k).is_none_or(|r| r.done);
                if done {
                    return Some((Ok(Vec::new()), (offset, true)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    Ok(axum::body::Body::from_stream(stream))
}
