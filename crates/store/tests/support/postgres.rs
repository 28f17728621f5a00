//! A real PostgreSQL for the tests of one process (Debian's `postgresql` package): a cluster
//! made by `initdb` in a temporary folder, served on a free loopback port, stopped when the
//! test process ends (its parent-death signal), with a fresh database per caller.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether the cluster syncs its commits (off for tests: they need no durability; on for a
/// bench that compares stores). Set before the first [`database`].
static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the cluster sync its commits, as a production server does.
pub fn durable() {
    DURABLE.store(true, Ordering::Relaxed);
}

/// The test cluster's password for user `berth`.
pub const PASSWORD: &str = "berth-test";

struct Cluster {
    port: u16,
    _dir: tempfile::TempDir,
}

/// PostgreSQL's programs: `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect(
        "PostgreSQL is not installed: the store's tests run on it too (apt-get install postgresql; .ci/run does)",
    )
}

/// `program args...`, as the `postgres` user when this is root (PostgreSQL refuses root), and
/// sent SIGTERM when the thread that starts it ends.
fn as_postgres(program: &Path) -> Command {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut cmd = Command::new("setpriv");
    if root {
        cmd.args([
            "--reuid",
            "postgres",
            "--regid",
            "postgres",
            "--init-groups",
        ]);
    }
    cmd.args(["--pdeathsig", "TERM", "--"]).arg(program);
    cmd
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        remove_stopped_clusters();
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("temp folder");
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status()
            .expect("chown");
        // Not root: the folder is ours already.
        let _ = status;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        let _ = Command::new("chown").arg("postgres:").arg(&pwfile).status();
        // Over TCP a password is asked for (a wrong one is a test), as on a real server.
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                "berth",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = as_postgres(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                if DURABLE.load(Ordering::Relaxed) {
                    "fsync=on"
                } else {
                    "fsync=off"
                },
                "-c",
                "max_connections=200",
            ])
            .stdout(std::fs::File::create(dir.path().join("log")).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("err")).expect("log"));
        // Started from a thread that lives as long as the server: its parent-death signal
        // stops it when the test process ends.
        std::thread::spawn(move || {
            let mut child = server.spawn().expect("start postgres");
            let _ = child.wait();
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start in 30 s: {}",
                std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cluster { port, _dir: dir }
    })
}

/// The URL of the cluster's `postgres` database (for making and dropping others).
pub fn admin_url() -> String {
    format!("postgres://berth:{PASSWORD}@127.0.0.1:{}/postgres", port())
}

/// The cluster's port.
pub fn port() -> u16 {
    cluster().port
}

/// A new, empty database; returns its URL.
pub async fn database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let admin = admin_url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to the test cluster");
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create a database");
    format!("postgres://berth:{PASSWORD}@127.0.0.1:{}/{name}", port())
}

/// Removes the folders of earlier test processes' clusters once their servers have stopped
/// (the folders outlive them: nothing drops a process's statics).
fn remove_stopped_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let ours = e.file_name().to_string_lossy().starts_with("berth-pg-");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(120));
        if !ours || !old {
            continue;
        }
        let pid = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string));
        let running = pid.is_some_and(|p| Path::new("/proc").join(p.trim()).exists());
        if !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
