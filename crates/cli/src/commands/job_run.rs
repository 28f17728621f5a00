//! `berth job-run` (hidden): runs a Kubernetes job's command in its pod, then uploads each
//! output folder to the Berth server, so `berth job download` works as on the local compute.
//! The exit code is the command's; a failed upload makes a successful command fail.

use std::path::Path;
use std::time::Duration;

use berth_scheduler::workdir::list_files;

use crate::failure::Failure;

/// Runs `command`, then uploads `name=folder` outputs under `upload_url`.
pub async fn run(upload_url: &str, outputs: &[String], command: &[String]) -> Result<i32, Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::new("job-run needs a command after --"))?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .map_err(|e| Failure::new(format!("cannot start `{program}`: {e}")))?;
    let code = status.code().unwrap_or(128 + 9);
    let token = std::env::var("BERTH_UPLOAD_TOKEN").unwrap_or_default();
    let http = crate::client::http_client(upload_url)?;
    for item in outputs {
        let Some((name, dir)) = item.split_once('=') else {
            return Err(Failure::new(format!(
                "--output `{item}` is not name=folder"
            )));
        };
        if let Err(e) = upload(&http, upload_url, &token, name, Path::new(dir)).await {
            eprintln!("[berth] cannot upload output `{name}`: {e}");
            return Ok(if code == 0 { 1 } else { code });
        }
    }
    Ok(code)
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
    dir: &Path,
) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let files = list_files(dir).map_err(|e| e.to_string())?;
    let mut bytes = 0;
    for (rel, size) in &files {
        let path = if dir.is_file() {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        let url = format!("{base}/{name}/{rel}");
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
    eprintln!(
        "[berth] uploaded output `{name}`: {} files, {bytes} bytes",
        files.len()
    );
    Ok(())
}
