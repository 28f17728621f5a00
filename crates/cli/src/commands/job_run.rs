//! `berth job-run` (hidden): runs a Kubernetes job's command in its pod as the local compute
//! runs it. Before: the code is copied into the writable working folder with `outputs/` and
//! `logs/`, and the conda file's environment is built with uv (its progress in the job's log).
//! After: each output folder, and `outputs/` and `logs/` as the job's artifacts, are uploaded
//! to the Berth server, so `berth job download` works as on the local compute. The exit code
//! is the command's; a failed upload makes a successful command fail.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::conda::PythonEnv;
use berth_core::job::ARTIFACTS_OUTPUT;
use berth_scheduler::envs::{BuildLog, EnvCache};
use berth_scheduler::workdir::{copy_tree, list_files};

use crate::failure::Failure;

/// What `job-run` does around the command.
pub struct JobRun {
    /// Copy this folder's contents into the working folder first.
    pub code_from: Option<PathBuf>,
    /// Build `$BERTH_PYTHON_ENV` under this folder and run the command in it.
    pub env_dir: Option<PathBuf>,
    /// `<server>/api/jobs/<name>/uploads`; the token is in `$BERTH_UPLOAD_TOKEN`.
    pub upload_url: Option<String>,
    /// `name=folder` of each output.
    pub outputs: Vec<String>,
}

/// Runs `command` with what `how` asks for around it.
pub async fn run(how: JobRun, command: &[String]) -> Result<i32, Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::new("job-run needs a command after --"))?;
    let workdir = std::env::current_dir().map_err(|e| Failure::new(e.to_string()))?;
    if let Some(from) = &how.code_from {
        prepare_workdir(from, &workdir).map_err(|e| {
            Failure::new(format!(
                "cannot copy the code into {}: {e}",
                workdir.display()
            ))
        })?;
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    if let Some(dir) = &how.env_dir {
        match build_env(dir).await {
            Ok(bin) => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![bin.clone()];
                dirs.extend(std::env::split_paths(&path));
                cmd.env("PATH", std::env::join_paths(dirs).unwrap_or(path));
                cmd.env("VIRTUAL_ENV", bin.parent().unwrap_or(&bin));
            }
            Err(e) => {
                eprintln!("[berth] the environment could not be built: {e}");
                return Ok(1);
            }
        }
    }
    // Its own process group: what the sampler sums when the pod has no cgroup of its own.
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start `{program}`: {e}")))?;
    let sampler = child
        .id()
        .and_then(|pid| super::job_sampler::spawn(pid as i32));
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::new(format!("`{program}` could not be waited for: {e}")))?;
    super::job_sampler::stop(sampler);
    let code = status.code().unwrap_or(128 + 9);
    let Some(url) = &how.upload_url else {
        return Ok(code);
    };
    let token = std::env::var("BERTH_UPLOAD_TOKEN").unwrap_or_default();
    let http = crate::client::http_client(url)?;
    let mut uploads: Vec<(String, String, PathBuf)> = Vec::new();
    for item in &how.outputs {
        let Some((name, dir)) = item.split_once('=') else {
            return Err(Failure::new(format!(
                "--output-dir `{item}` is not name=folder"
            )));
        };
        uploads.push((name.to_string(), String::new(), PathBuf::from(dir)));
    }
    if how.code_from.is_some() {
        for top in ["outputs", "logs"] {
            uploads.push((
                ARTIFACTS_OUTPUT.into(),
                format!("{top}/"),
                workdir.join(top),
            ));
        }
    }
    for (name, prefix, dir) in uploads {
        if let Err(e) = upload(&http, url, &token, &name, &prefix, &dir).await {
            eprintln!("[berth] cannot upload output `{name}`: {e}");
            return Ok(if code == 0 { 1 } else { code });
        }
    }
    Ok(code)
}

/// Copies the delivered code into the working folder (skipping a ConfigMap volume's `..data`
/// bookkeeping) and makes `outputs/` and `logs/`, as Azure ML's working folder has them.
fn prepare_workdir(from: &Path, workdir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let src = entry.path();
        if std::fs::metadata(&src)?.is_dir() {
            copy_tree(&src, &workdir.join(&name))?;
        } else {
            std::fs::copy(&src, workdir.join(&name))?;
        }
    }
    for top in ["outputs", "logs"] {
        std::fs::create_dir_all(workdir.join(top))?;
    }
    Ok(())
}

/// Builds `$BERTH_PYTHON_ENV` under `dir` with the same cache logic as the local compute,
/// writing its progress to standard output (the pod's log); returns the environment's `bin`
/// folder.
pub async fn build_env(dir: &Path) -> Result<PathBuf, String> {
    let text = std::env::var(berth_scheduler::pod_env::PYTHON_ENV_VAR)
        .map_err(|_| "the pod names no environment to build".to_string())?;
    let env: PythonEnv = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let mut log = BuildLog::to(tokio::fs::File::from_std(std::fs::File::from(stdout)));
    let cache = EnvCache::new(dir.to_path_buf());
    let ready = cache
        .ensure(&env, &mut log)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ready.bin())
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    prefix: &str,
    dir: &Path,
) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let files = list_files(dir).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Ok(());
    }
    let mut bytes = 0;
    for (rel, size) in &files {
        let path = if dir.is_file() {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        let url = format!("{base}/{name}/{prefix}{rel}");
        let mut last = String::new();
        let mut sent = false;
        // As `berth fetch`: about 80 s of tries, so a restarting server loses no output.
        for attempt in 0..10u32 {
            if attempt > 0 {
                let wait = Duration::from_millis(250 << attempt.min(7));
                tokio::time::sleep(wait.min(Duration::from_secs(16))).await;
            }
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            match http.put(&url).bearer_auth(token).body(file).send().await {
                Ok(r) if r.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(r) => {
                    let status = r.status();
                    last = format!(
                        "{url}: HTTP {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                    if status.is_client_error() {
                        break;
                    }
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if !sent {
            return Err(last);
        }
        bytes += size;
    }
    let what = if prefix.is_empty() {
        format!("output `{name}`")
    } else {
        format!("./{}", prefix.trim_end_matches('/'))
    };
    eprintln!(
        "[berth] uploaded {what}: {} files, {bytes} bytes",
        files.len()
    );
    Ok(())
}
