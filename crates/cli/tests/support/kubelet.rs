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
use serde_json::json;
use tokio::process::{Child, Command};

#[path = "pod_status.rs"]
mod pod_status;
use pod_status::{ended_status, init_failed_status, patch, running_status, waiting_status};

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
    container: String,
    ip: String,
    /// `http://ip:port/path` of the readiness probe, and whether it passed last time.
    probe: Option<(String, bool)>,
    /// The init container that exited non-zero, and its code: the container never started.
    init_failed: Option<(String, i32)>,
}

#[derive(Default)]
struct Shared {
    nodes: Vec<String>,
    pods: HashMap<String, Running>,
    /// Namespaces whose pods are only marked running and ready, with no process.
    simulated: Vec<String>,
    /// Files "in every image": a path in the container, and the local file it is.
    image_files: Vec<(String, String)>,
    /// The last loopback address given to a pod (127.a.b.N, with a and b random per kubelet so
    /// that leftovers of another run do not collide).
    last_ip: u32,
    net: (u8, u8),
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
        let shared = Arc::new(Mutex::new(Shared {
            net: (rand::random_range(1..250), rand::random_range(1..250)),
            ..Shared::default()
        }));
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
        let mut tasks = vec![tokio::spawn(berth_router::listen::serve(
            listener,
            logs,
            Some(config),
            berth_router::listen::Limits::with_max_connections(64),
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

    /// Makes `path` inside every image the local file `local` (e.g. Berth's binary in its image).
    pub fn image_file(&self, path: &str, local: &str) {
        self.shared
            .lock()
            .unwrap()
            .image_files
            .push((path.into(), local.into()));
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
                    kill_container(c);
                }
            }
        }
    }
}

/// Kills a container's process and everything in its process group.
fn kill_container(c: &mut tokio::process::Child) {
    if let Some(pid) = c
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = c.start_kill();
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
                kill_container(c);
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
            let (simulated, ip, files) = {
                let mut sh = shared.lock().unwrap();
                sh.last_ip += 1;
                let (a, b) = sh.net;
                (
                    sh.simulated.contains(&ns),
                    format!("127.{a}.{b}.{}", sh.last_ip + 1),
                    sh.image_files.clone(),
                )
            };
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let started = if simulated {
                Ok(Running {
                    child: None,
                    log: dir.join("simulated.log"),
                    done: false,
                    container: container.clone(),
                    ip: ip.clone(),
                    probe: None,
                    init_failed: None,
                })
            } else {
                start(client, &pod, &dir.join(&ns).join(&name), &ip, &files).await
            };
            match started {
                Ok(r) if r.init_failed.is_some() => {
                    let (init, code) = r.init_failed.clone().unwrap();
                    let restarts = pod.spec.as_ref().and_then(|s| s.restart_policy.clone());
                    let status = init_failed_status(
                        &container,
                        &init,
                        code,
                        restarts.as_deref() == Some("Never"),
                    );
                    shared.lock().unwrap().pods.insert(k.clone(), r);
                    patch(&pods, &name, status).await;
                }
                Ok(r) => {
                    let ready = r.probe.is_none();
                    shared.lock().unwrap().pods.insert(k.clone(), r);
                    patch(&pods, &name, running_status(&container, &ip, ready)).await;
                }
                Err(e) => {
                    patch(
                        &pods,
                        &name,
                        waiting_status(&container, "CreateContainerConfigError", &e),
                    )
                    .await;
                }
            }
            continue;
        }
        // Readiness probes: the Ready condition follows the last answer.
        let probe = shared.lock().unwrap().pods.get(&k).and_then(|r| {
            (!r.done)
                .then(|| r.probe.clone())
                .flatten()
                .map(|p| (p, r.container.clone(), r.ip.clone()))
        });
        if let Some(((url, was), container, ip)) = probe {
            let now_ok = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if now_ok != was {
                if let Some(r) = shared.lock().unwrap().pods.get_mut(&k) {
                    r.probe = Some((url, now_ok));
                }
                patch(&pods, &name, running_status(&container, &ip, now_ok)).await;
            }
        }
        let exited = {
            let mut s = shared.lock().unwrap();
            let r = s.pods.get_mut(&k).unwrap();
            match (r.done, r.child.as_mut().map(|c| c.try_wait())) {
                (false, Some(Ok(Some(status)))) => {
                    r.done = true;
                    Some((status.code().unwrap_or(137), r.container.clone()))
                }
                _ => None,
            }
        };
        if let Some((code, container)) = exited {
            let restarts = pod.spec.as_ref().and_then(|s| s.restart_policy.clone());
            if restarts.as_deref().is_none_or(|p| p == "Always") {
                // A kubelet would restart it, and back off: say so as it does.
                let message = format!("the container exited with code {code}");
                patch(
                    &pods,
                    &name,
                    waiting_status(&container, "CrashLoopBackOff", &message),
                )
                .await;
            } else {
                patch(&pods, &name, ended_status(&container, code)).await;
            }
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
            kill_container(c);
        }
    }
    Ok(())
}

/// Materializes the pod's volumes, runs its init containers to completion and starts its
/// first container's command.
async fn start(
    client: &Client,
    pod: &Pod,
    dir: &Path,
    ip: &str,
    image_files: &[(String, String)],
) -> Result<Running, String> {
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
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let command_of =
        |c: &k8s_openapi::api::core::v1::Container, log: &Path| -> Result<Command, String> {
            let mut mounts: Vec<(String, String)> = c
                .volume_mounts
                .iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m.mount_path.clone(),
                        volumes.get(&m.name)?.display().to_string(),
                    ))
                })
                .chain(image_files.iter().cloned())
                .collect();
            mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
            let map = |s: &str| {
                mounts.iter().fold(s.to_string(), |acc, (from, to)| {
                    acc.replace(from.as_str(), to)
                })
            };
            let mut env: Vec<(String, String)> = Vec::new();
            for e in c.env.iter().flatten() {
                let field = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.as_str());
                let value = match field {
                    Some("status.podIP") => ip.to_string(),
                    Some("metadata.name") => pod_name.clone(),
                    Some("metadata.namespace") => ns.clone(),
                    _ => map(e.value.as_deref().unwrap_or_default()),
                };
                env.push((e.name.clone(), value));
            }
            // $(VAR) in command and args, as a kubelet expands it.
            let expand = |s: &str| {
                env.iter()
                    .fold(map(s), |acc, (k, v)| acc.replace(&format!("$({k})"), v))
            };
            let argv: Vec<String> = c
                .command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .map(|a| expand(a))
                .collect();
            let (program, args) = argv.split_first().ok_or("no command")?;
            let file = std::fs::File::create(log).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(program);
            cmd.args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(file.try_clone().map_err(|e| e.to_string())?)
                .stderr(file)
                // Its own group: killing the container kills what it started, as a real
                // kubelet's cgroup does.
                .process_group(0)
                .kill_on_drop(true);
            if let Some(wd) = &c.working_dir {
                cmd.current_dir(map(wd));
            }
            Ok(cmd)
        };
    for init in spec.init_containers.iter().flatten() {
        let log = dir.join(format!("{}.log", init.name));
        let status = command_of(init, &log)?
            .status()
            .await
            .map_err(|e| format!("init container {}: {e}", init.name))?;
        if !status.success() {
            return Ok(Running {
                child: None,
                log: dir.join("container.log"),
                done: true,
                container: container.name.clone(),
                ip: ip.to_string(),
                probe: None,
                init_failed: Some((init.name.clone(), status.code().unwrap_or(137))),
            });
        }
    }
    let log = dir.join("container.log");
    let child = command_of(container, &log)?
        .spawn()
        .map_err(|e| format!("cannot start container {}: {e}", container.name))?;
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|h| {
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            let port = match &h.port {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            let path = h.path.as_deref().unwrap_or("/");
            (format!("http://{ip}:{port}{path}"), false)
        });
    Ok(Running {
        child: Some(child),
        log,
        done: false,
        container: container.name.clone(),
        ip: ip.to_string(),
        probe,
        init_failed: None,
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
    axum::extract::Path((ns, pod, container)): axum::extract::Path<(String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Result<axum::body::Body, axum::http::StatusCode> {
    let k = key(&ns, &pod);
    let (log, main) = shared
        .lock()
        .unwrap()
        .pods
        .get(&k)
        .map(|r| (r.log.clone(), r.container.clone()))
        .ok_or(axum::http::StatusCode::NOT_FOUND)?;
    if container != main {
        // An init container's log, written beside the container's as `<name>.log`.
        let init = log.with_file_name(format!("{container}.log"));
        return std::fs::read(&init)
            .map(axum::body::Body::from)
            .map_err(|_| axum::http::StatusCode::NOT_FOUND);
    }
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
