//! `berth fetch` (hidden): an init container's download of the files too large for a
//! ConfigMap (a job's code and inputs, a deployment's code and model) from the Berth server,
//! each `part` into its folder, with the token in `$BERTH_FETCH_TOKEN`; and of a job's URL
//! inputs in `download` mode (sent no token). Every file is written beside its destination
//! and renamed once its full length has arrived; a server that does not answer is retried
//! with backoff, so a restarting server only delays the pod.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_core::api::OutputFile;
use berth_scheduler::pod_env::FETCH_TOKEN_ENV;
use tokio::io::AsyncWriteExt;

use crate::failure::Failure;

/// Tries per request before giving up: with the waits between them (0.5 s doubling to 16 s)
/// about 80 s, long enough for a restarted in-cluster server to come back.
const TRIES: u32 = 10;
/// The longest wait between tries.
const MAX_WAIT: Duration = Duration::from_secs(16);

/// Fetches the listing at `url` and each file whose part an `--into part=folder` names, then
/// each `--download folder=URL`.
pub async fn run(url: Option<&str>, into: &[String], downloads: &[String]) -> Result<i32, Failure> {
    if let Some(url) = url {
        from_server(url, into).await?;
    }
    for item in downloads {
        let (dir, source) = item
            .split_once('=')
            .ok_or_else(|| Failure::new(format!("--download `{item}` is not folder=URL")))?;
        let dest = Path::new(dir).join(berth_core::job::url_file_name(source));
        let http = crate::client::http_client(source)?;
        let progress = Progress::new(None);
        let size = retrying(|| download(&http, source, None, &dest, None, &progress)).await?;
        eprintln!(
            "[berth] downloaded {source} to {}: {}",
            dest.display(),
            human(size)
        );
    }
    Ok(0)
}

async fn from_server(url: &str, into: &[String]) -> Result<(), Failure> {
    let url = url.trim_end_matches('/');
    let mut targets: Vec<(String, PathBuf)> = Vec::with_capacity(into.len());
    for item in into {
        let (part, dir) = item
            .split_once('=')
            .ok_or_else(|| Failure::new(format!("--into `{item}` is not part=folder")))?;
        targets.push((part.to_string(), PathBuf::from(dir)));
    }
    let token = std::env::var(FETCH_TOKEN_ENV).unwrap_or_default();
    let http = crate::client::http_client(url)?;
    let listing: Vec<OutputFile> = retrying(|| async {
        let r = send(&http, url, Some(token.as_str())).await?;
        r.json()
            .await
            .map_err(|e| Attempt::Retry(format!("{url}: the listing is not valid: {e}")))
    })
    .await?;
    let total: u64 = listing.iter().map(|f| f.size).sum();
    let progress = Progress::new(Some(total));
    eprintln!(
        "[berth] fetching {} files ({}) from {url}",
        listing.len(),
        human(total)
    );
    for (part, dir) in &targets {
        let prefix = format!("{part}/");
        let (mut files, mut bytes) = (0, 0);
        for f in listing.iter().filter(|f| f.path.starts_with(&prefix)) {
            let rel = &f.path[prefix.len()..];
            let dest = dir.join(rel);
            let file_url = format!("{url}/{}", f.path);
            retrying(|| {
                let token = Some(token.as_str());
                download(&http, &file_url, token, &dest, Some(f.size), &progress)
            })
            .await?;
            files += 1;
            bytes += f.size;
        }
        eprintln!(
            "[berth] fetched `{part}` into {}: {files} files, {}",
            dir.display(),
            human(bytes)
        );
    }
    Ok(())
}

enum Attempt {
    Retry(String),
    Fail(String),
}

async fn retrying<T, F, Fut>(mut f: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            eprintln!("[berth] {last}; retrying");
            let wait = Duration::from_millis(250 << attempt.min(7)).min(MAX_WAIT);
            tokio::time::sleep(wait).await;
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fail(m)) => return Err(Failure::new(m)),
            Err(Attempt::Retry(m)) => last = m,
        }
    }
    Err(Failure::new(format!("gave up after {TRIES} tries: {last}")))
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<reqwest::Response, Attempt> {
    let mut req = http.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req
        .send()
        .await
        .map_err(|e| Attempt::Retry(format!("{url}: {}", crate::client::root_cause(&e))))?;
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    let body = r.text().await.unwrap_or_default();
    let m = format!("{url}: HTTP {status}: {body}");
    Err(if status.is_client_error() {
        Attempt::Fail(m)
    } else {
        Attempt::Retry(m)
    })
}

/// Downloads `url` to `dest` through a temporary name; checks the length against `size` (the
/// listing's) or the response's Content-Length. Returns the bytes written.
async fn download(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    dest: &Path,
    size: Option<u64>,
    progress: &Progress,
) -> Result<u64, Attempt> {
    let io = |e: std::io::Error| Attempt::Fail(format!("{}: {e}", dest.display()));
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let mut r = send(http, url, token).await?;
    let expected = size.or(r.content_length());
    let mut part = dest.as_os_str().to_owned();
    part.push(".berth-part");
    let part = PathBuf::from(part);
    let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
    let mut got = 0u64;
    let body = async {
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| Attempt::Retry(format!("{url}: cut short: {e}")))?
        {
            got += chunk.len() as u64;
            progress.add(chunk.len() as u64);
            file.write_all(&chunk).await.map_err(io)?;
        }
        match expected.filter(|&w| w != got) {
            Some(want) => Err(Attempt::Retry(format!(
                "{url}: {got} bytes arrived of {want}"
            ))),
            None => Ok(()),
        }
    };
    if let Err(e) = body.await {
        // A retry starts the file again.
        progress.sub(got);
        return Err(e);
    }
    file.flush().await.map_err(io)?;
    tokio::fs::rename(&part, dest).await.map_err(io)?;
    Ok(got)
}

/// Bytes fetched so far, said every few seconds so a large model's fetch shows it moves.
struct Progress {
    total: Option<u64>,
    done: AtomicU64,
    said: Mutex<Instant>,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new(total: Option<u64>) -> Progress {
        Progress {
            total,
            done: AtomicU64::new(0),
            said: Mutex::new(Instant::now()),
        }
    }

    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let Ok(mut said) = self.said.lock() else {
            return;
        };
        if said.elapsed() < Self::EVERY {
            return;
        }
        *said = Instant::now();
        match self.total.filter(|&t| t > 0) {
            Some(total) => eprintln!(
                "[berth] {} of {} ({}%)",
                human(done),
                human(total),
                done * 100 / total
            ),
            None => eprintln!("[berth] {}", human(done)),
        }
    }

    fn sub(&self, n: u64) {
        self.done.fetch_sub(n, Ordering::Relaxed);
    }
}

fn human(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
