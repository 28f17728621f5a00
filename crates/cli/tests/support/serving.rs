//! Helpers for the online-endpoint tests: the seed's endpoint, load from client threads, and
//! finding replica processes.

use super::{Server, http_post, seed_dir};

pub fn prepare(s: &Server) {
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &["instance-type", "apply", "-f", "instance-types.yaml"],
    );
    s.ok_in(
        &seed,
        &[
            "compute",
            "attach",
            "--type",
            "local",
            "--name",
            "aks-compute",
        ],
    );
    model_and_endpoint(s);
}

/// The seed's model (version 1) and endpoint, on whatever compute `aks-compute` is.
pub fn model_and_endpoint(s: &Server) {
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &[
            "model",
            "create",
            "--name",
            "my-model",
            "--version",
            "1",
            "--path",
            "./model",
        ],
    );
    s.ok_in(
        &seed,
        &["online-endpoint", "create", "--file", "endpoint.yaml"],
    );
}

/// Sends `n` requests one after another; returns how many did not get 200.
pub fn load(
    uri: String,
    key: String,
    n: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let body = std::fs::read_to_string(seed_dir().join("sample-request.json")).unwrap();
        let auth = format!("Bearer {key}");
        let mut failed = 0;
        for _ in 0..n {
            if http_post(
                &uri,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
            .0 != 200
            {
                failed += 1;
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        failed
    })
}

pub fn wait_for(done: &std::sync::atomic::AtomicUsize, n: usize) {
    while done.load(std::sync::atomic::Ordering::Relaxed) < n {
        std::thread::yield_now();
    }
}

pub fn serve_blue(s: &Server) -> (String, String, String) {
    let seed = seed_dir();
    prepare(s);
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    endpoint_access(s)
}

/// The seed endpoint's scoring URI and its primary and secondary keys.
pub fn endpoint_access(s: &Server) -> (String, String, String) {
    let seed = seed_dir();
    let uri = s.tsv(
        &seed,
        &["online-endpoint", "show", "-n", "my-model-endpoint"],
        "scoring_uri",
    );
    let creds = s.json(&[
        "online-endpoint",
        "get-credentials",
        "-n",
        "my-model-endpoint",
    ]);
    let key = |k: &str| creds[k].as_str().unwrap().to_string();
    (uri, key("primaryKey"), key("secondaryKey"))
}

/// The live replica (`berth runtime`) processes of the server whose home is `home`.
pub fn replica_pids(home: &std::path::Path) -> Vec<u32> {
    super::runtime_pids(home)
}

/// `berth online-endpoint invoke -n my-model-endpoint -r sample-request.json [extra...]`.
pub fn invoke(s: &Server, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "online-endpoint",
        "invoke",
        "-n",
        "my-model-endpoint",
        "-r",
        "sample-request.json",
    ];
    args.extend_from_slice(extra);
    s.cli_in(&seed_dir(), &args)
}

/// The ONNX example's endpoint with its deployment taking all traffic; the example's folder.
pub fn serve_onnx(s: &Server) -> std::path::PathBuf {
    let ex = seed_dir().join("../onnx");
    s.ok_in(&ex, &["online-endpoint", "create", "-f", "endpoint.yaml"]);
    s.ok_in(
        &ex,
        &[
            "online-deployment",
            "create",
            "-f",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    ex
}

/// A child process killed when the test ends, passing or not (a standalone router would
/// otherwise outlive a failed test and hold its output open).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A standalone `berth router` on port 0 with `env` (how it finds its server); it and its
/// scoring base URL once it says it is ready.
pub fn start_router(env: &[(&str, &str)]) -> (Killed, String) {
    use std::io::BufRead;
    let mut router = Killed(
        std::process::Command::new(super::BERTH)
            .args(["router", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env("BERTH_LOG", "warn")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(router.0.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("berth router ready on ").map(str::to_string))
        .expect("router ready line");
    std::thread::spawn(move || for _ in lines {});
    (router, addr)
}
