//! A real Kubernetes control plane for one test (`../shared/k8s-testenv`, Kubernetes 1.20),
//! stopped on drop, with a kube client for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::text;

/// The runtime the Kubernetes tests drive their kube client and test kubelet on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A control plane for one test.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub server: String,
    pub token: String,
}

pub fn testenv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/k8s-testenv")
}

/// The control plane's binaries, unpacked once for all the tests of a run (several tests start
/// a control plane each): `$TMPDIR/berth-k8s-bin-<uid>`, reused when complete.
fn binaries() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("berth-k8s-bin-{uid}"));
        std::fs::create_dir_all(&dir).unwrap();
        for b in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let target = dir.join(b);
            if target.exists() {
                continue;
            }
            let tmp = dir.join(format!("{b}.{}.tmp", std::process::id()));
            let out = std::fs::File::create(&tmp).unwrap();
            let status = Command::new("xz")
                .arg("-dc")
                .arg(testenv().join("bin").join(format!("{b}.xz")))
                .stdout(out)
                .status()
                .unwrap();
            assert!(status.success(), "xz could not unpack {b}");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &target).unwrap();
        }
        dir
    })
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let up = testenv().join("up.sh");
        assert!(
            up.exists(),
            "the Kubernetes test environment is missing at {}",
            up.display()
        );
        let out = Command::new("bash")
            .arg(&up)
            .arg(dir.path())
            .env("BERTH_K8S_BIN", binaries())
            .output()
            .unwrap();
        assert!(out.status.success(), "up.sh failed: {}", text(&out.stderr));
        let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
        let field = |key: &str| {
            kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
                .unwrap()
        };
        ControlPlane {
            server: field("server:"),
            token: field("token:"),
            dir,
        }
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kube client (call inside a tokio runtime).
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(testenv().join("down.sh"))
            .arg(self.dir.path())
            .output();
    }
}

/// `kubectl apply -f instance-types.yaml` with the CRD first: the seed's file, as written.
pub async fn apply_instance_types(client: &kube::Client) {
    use berth_scheduler::backend::kubernetes::apply::apply;
    apply(client, &berth_core::extension::render::instance_type_crd())
        .await
        .unwrap();
    let seed = std::fs::read_to_string(super::seed_dir().join("instance-types.yaml")).unwrap();
    for t in serde_saphyr::from_multiple::<serde_json::Value>(&seed).unwrap() {
        apply(client, &t).await.unwrap();
    }
}

/// Polls every 100 ms until `f` is true; `last` says what was seen when it gives up.
pub fn eventually(
    what: &str,
    timeout: std::time::Duration,
    last: impl Fn() -> String,
    mut f: impl FnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; last seen: {}",
            last()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A new ServiceAccount in `default` with no permissions, and a token for it (TokenRequest).
pub async fn token_for_new_service_account(client: &kube::Client, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let req: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"audiences": []}})).unwrap();
    let answer: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &req)
        .await
        .unwrap();
    answer.status.unwrap().token
}

/// `berth compute attach --type Kubernetes --name aks-compute` to this control plane's
/// `azureml-workloads` namespace (created), with `extra` flags.
pub fn attach_cluster(s: &crate::support::Server, cp: &ControlPlane, extra: &[&str]) {
    let kc = cp.kubeconfig().display().to_string();
    let mut args = vec![
        "compute",
        "attach",
        "--type",
        "Kubernetes",
        "--name",
        "aks-compute",
        "--kubeconfig",
        &kc,
        "--namespace",
        "azureml-workloads",
        "--create-namespace",
    ];
    args.extend_from_slice(extra);
    s.ok_in(Path::new("."), &args);
}

/// The uv binary to put in Berth's image: `$BERTH_UV`, else the one pip installed (PATH may
/// hold a pyenv shim, which is a script), else the first `uv` on the PATH, as an absolute path.
pub fn uv_binary() -> String {
    if let Ok(uv) = std::env::var("BERTH_UV") {
        return uv;
    }
    let from_pip = std::process::Command::new("python3")
        .args(["-c", "import uv; print(uv.find_uv_bin())"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(uv) = from_pip {
        return uv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("uv"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "uv".into())
}
