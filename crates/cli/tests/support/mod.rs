//! Test support: a real `berth server` on port 0 with its own home, and a way to run the CLI
//! against it.

#![allow(dead_code)]

pub mod browser;
pub mod serving;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The longest any one CLI call of a test may take (a conda build on a cold cache is the
/// slowest): past it the call is killed and the test fails with what the CLI said so far,
/// instead of hanging the whole run.
const CLI_LIMIT: std::time::Duration = std::time::Duration::from_secs(420);

/// Runs `cmd` to its end with its output captured, or kills it after `CLI_LIMIT` and fails.
pub fn output_within_limit(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_LIMIT) {
        Ok(out) => out.expect("wait for berth"),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let out = rx.recv().expect("berth's output").expect("wait for berth");
            panic!(
                "{cmd:?} did not end within {CLI_LIMIT:?}; it said:\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
    }
}

/// A running server and its home folder.
pub struct Server {
    pub home: tempfile::TempDir,
    pub child: Child,
    pub api_url: String,
}

impl Server {
    /// Starts a server with extra flags; returns once it is ready (reads its "ready" line).
    pub fn start(flags: &[&str]) -> Server {
        let home = tempfile::tempdir().expect("temp home");
        Self::start_in(home, flags, &[])
    }

    /// Starts a server in an existing home, with extra flags and environment.
    pub fn start_in(home: tempfile::TempDir, flags: &[&str], env: &[(&str, &str)]) -> Server {
        // A test may pin the API address (a restart on the same address).
        let api = if flags.contains(&"--api-listen") {
            &[][..]
        } else {
            &["--api-listen", "127.0.0.1:0"][..]
        };
        Self::spawn(home, Command::new(BERTH), flags, api, env)
    }

    /// Starts a server whose process may open at most `open_files` files (soft and hard).
    pub fn start_with_open_files(open_files: u64) -> Server {
        let home = tempfile::tempdir().expect("temp home");
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
            BERTH,
        ]);
        Self::spawn(home, sh, &[], &["--api-listen", "127.0.0.1:0"], &[])
    }

    /// Starts a server from a copy of the binary that every user may run (a replica run as
    /// another user execs it; the checkout may sit in a folder only root can enter). The copy
    /// lives as long as `keep`.
    pub fn start_runnable_by_all(flags: &[&str], keep: &tempfile::TempDir) -> Server {
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(keep.path(), open.clone()).expect("chmod");
        let bin = keep.path().join("berth");
        std::fs::copy(BERTH, &bin).expect("copy berth");
        std::fs::set_permissions(&bin, open).expect("chmod");
        let home = tempfile::tempdir().expect("temp home");
        Self::spawn(
            home,
            Command::new(bin),
            flags,
            &["--api-listen", "127.0.0.1:0"],
            &[],
        )
    }

    fn spawn(
        home: tempfile::TempDir,
        mut command: Command,
        flags: &[&str],
        api: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = command
            .arg("server")
            .args(api)
            .args(["--scoring-listen", "127.0.0.1:0"])
            .args(flags)
            .env("BERTH_HOME", home.path())
            .env("BERTH_LOG", "warn")
            // Tests that run in a pod must not attach that pod's cluster by accident.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start berth server");
        let stderr = child.stderr.take().expect("stderr");
        // The server's lines, read on a thread of their own so that a server that never says
        // it is ready fails the test after a while, saying what it said, instead of hanging;
        // the thread keeps draining them after (a full pipe would block the server).
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut said = Vec::new();
        let api_url = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("berth server ready: API ") {
                        break rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                    }
                    said.push(line);
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "the server did not start ({e}); it said:\n{}",
                        said.join("\n")
                    );
                }
            }
        };
        Server {
            home,
            child,
            api_url,
        }
    }

    /// Runs `berth <args>` against this server from folder `cwd`.
    pub fn cli_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(BERTH);
        cmd.args(args)
            .current_dir(cwd)
            .env("BERTH_HOME", self.home.path());
        output_within_limit(cmd)
    }

    /// Runs `berth <args>` from `cwd` and asserts that it succeeded.
    pub fn ok_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let out = self.cli_in(cwd, args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            text(&out.stderr)
        );
        out
    }

    /// Runs `berth <args> --query <field> -o tsv` from `cwd` and returns the value.
    pub fn tsv(&self, cwd: &Path, args: &[&str], field: &str) -> String {
        let mut a = args.to_vec();
        a.extend(["--query", field, "-o", "tsv"]);
        text(&self.ok_in(cwd, &a).stdout).trim().to_string()
    }

    /// Runs `berth <args>` from the home folder.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in(self.home.path(), args)
    }

    /// Runs `berth <args> -o json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// The server's /metrics text.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let host = self.api_url.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(host).expect("connect");
        write!(
            conn,
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut resp = String::new();
        conn.read_to_string(&mut resp).expect("read");
        resp
    }

    /// The status of a job.
    pub fn status(&self, job: &str) -> serde_json::Value {
        self.json(&["job", "show", "--name", job])
    }

    /// Stops the server with SIGTERM, waits for it, and returns its exit status and home.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = self.child.wait().expect("wait");
        (
            status,
            std::mem::replace(&mut self.home, tempfile::tempdir().expect("temp")),
        )
    }

    /// Kills the server with SIGKILL and returns its home.
    pub fn kill9(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.home, tempfile::tempdir().expect("temp"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Replicas outlive their server (a restarted one adopts them): a finished test stops
        // its own, each with its process group (its Python workers).
        for pid in runtime_pids(self.home.path()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// Every process's pid.
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// A process's state letter (`R`, `S`, `Z`...) and parent, from `/proc/<pid>/stat`; `None`
/// when it is gone.
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields start after its `) `.
    let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The live `berth runtime` processes whose command line names `home`.
pub fn runtime_pids(home: &Path) -> Vec<u32> {
    let home = home.to_string_lossy().into_owned();
    pids()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let zombie = proc_state(*pid).is_some_and(|(state, _)| state == 'Z');
            !zombie
                && args.get(1).is_some_and(|a| a == "runtime")
                && args.iter().any(|a| a.contains(&home))
        })
        .collect()
}

/// A minimal HTTP/1.1 POST over a plain TCP socket: returns the status and the body.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (status, _, body) = http_request("POST", url, headers, body);
    (status, body)
}

/// A minimal HTTP/1.1 request over a plain TCP socket: the status, the head and the body.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut conn = std::net::TcpStream::connect(host).expect("connect");
    // A request that is never answered fails the test instead of hanging the run.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("read timeout");
    let mut req = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    conn.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_string(), body.to_string())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes a file under `dir`, creating folders.
pub fn write(dir: &Path, rel: &str, body: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, body).expect("write");
    p
}

/// An instance type file with one type.
pub fn instance_type(name: &str, cpu: &str, memory: &str) -> String {
    format!(
        "apiVersion: amlarc.azureml.com/v1alpha1\nkind: InstanceType\nmetadata:\n  name: {name}\nspec:\n  resources:\n    requests:\n      cpu: \"{cpu}\"\n      memory: {memory}\n    limits:\n      cpu: \"{cpu}\"\n      memory: {memory}\n"
    )
}

/// A job file whose command waits until `flag` exists, then prints `message`.
pub fn gated_job(dir: &Path, flag: &Path, instance_type: Option<&str>, message: &str) {
    let resources = instance_type
        .map(|t| format!("resources:\n  instance_type: {t}\n"))
        .unwrap_or_default();
    let command = format!(
        "command: while [ ! -f {} ]; do sleep 0.05; done; echo {message}\n",
        flag.display()
    );
    write(dir, "job.yaml", &format!("{command}{resources}"));
}

/// The seed example folder.
pub fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed")
}

/// Serves `body` once over plain HTTP on a port-0 listener; returns the URL.
pub fn serve_once(body: &'static str) -> String {
    serve_status(200, body)
}

/// Answers one request with `status` and `body` over plain HTTP on a port-0 listener; returns
/// the URL.
pub fn serve_status(status: u16, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let reason = if status == 200 { "OK" } else { "Not Found" };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/remote/data.csv")
}
