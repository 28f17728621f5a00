//! The typed HTTP client of the control-plane API, and how the CLI finds the server.

use std::path::{Path, PathBuf};

use berth_core::api::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::failure::Failure;

/// A connection to a Berth server, or to any of several servers on one database
/// (`BERTH_SERVER=URL1,URL2`): a request goes to the one that answered last, and on to the
/// next when that one cannot be reached or is a standby whose leader does not answer.
pub struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    token: String,
}

/// The API URLs in `BERTH_SERVER`: one, or several separated by commas.
fn bases(list: &str) -> Vec<String> {
    list.split(',')
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

/// The home folder: `--home`, else `$BERTH_HOME`, else `~/.berth`.
pub fn home_dir(flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".berth"),
    }
}

impl Client {
    /// The client a standalone router uses: `BERTH_SERVER` + `BERTH_ROUTER_TOKEN` (what the
    /// extension gives its routers), else the server found as [`Client::connect`] finds it,
    /// presenting the router token made from its API token: a router never sends the API token.
    pub fn connect_router(home: &Path) -> Result<Client, Failure> {
        if let (Ok(base), Ok(token)) = (
            std::env::var("BERTH_SERVER"),
            std::env::var("BERTH_ROUTER_TOKEN"),
        ) {
            return Client::new(bases(&base), token.trim().to_string());
        }
        let mut client = Self::connect(home)?;
        client.token = berth_server::auth::router_token(&client.token);
        Ok(client)
    }

    /// Finds the server: `BERTH_SERVER` + `BERTH_TOKEN`, else `<home>/server.json`.
    pub fn connect(home: &Path) -> Result<Client, Failure> {
        if let Ok(base) = std::env::var("BERTH_SERVER") {
            let token = std::env::var("BERTH_TOKEN").map_err(|_| {
                Failure::new("BERTH_SERVER is set but BERTH_TOKEN is not")
                    .hint("export BERTH_TOKEN=<the server's token>")
            })?;
            return Client::new(bases(&base), token);
        }
        let info_path = home.join("server.json");
        let text = std::fs::read_to_string(&info_path).map_err(|_| {
            Failure::new(format!("no berth server is running for {} (there is no {})", home.display(), info_path.display()))
                .hint("start one with `berth server &`, or set BERTH_SERVER and BERTH_TOKEN to reach a remote one")
        })?;
        let info: berth_server::ServerInfo = serde_json::from_str(&text)
            .map_err(|e| Failure::new(format!("{} is not readable: {e}", info_path.display())))?;
        let token = std::fs::read_to_string(&info.token_file).map_err(|e| {
            Failure::new(format!(
                "cannot read the server token {}: {e}",
                info.token_file
            ))
        })?;
        Client::new(vec![info.api_url], token.trim().to_string())
    }

    fn new(bases: Vec<String>, token: String) -> Result<Client, Failure> {
        let first = bases.first().ok_or_else(|| {
            Failure::new("BERTH_SERVER is empty").hint("set it to the server's API URL")
        })?;
        // One client for all: plain http, or https if any of them is.
        let tls = bases.iter().find(|b| b.starts_with("https://"));
        Ok(Client {
            http: http_client(tls.unwrap_or(first))?,
            bases,
            current: Default::default(),
            token,
        })
    }

    fn request(&self, base: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
    }

    /// Sends a request and returns the raw response, turning API errors into failures.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, Failure> {
        use std::sync::atomic::Ordering;
        let first = self.current.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut failure = None;
        // Only what was not acted on goes on to the next server: a connection refused, or a
        // standby's NotLeader.
        for i in (0..n).map(|k| (first + k) % n) {
            let base = &self.bases[i];
            let mut req = self.request(base, method.clone(), path);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let f = Failure::new(format!(
                        "cannot reach the berth server at {base}: {}",
                        root_cause(&e)
                    ))
                    .hint("is `berth server` running? `berth server &` starts one");
                    if e.is_connect() {
                        failure = Some(f);
                        continue;
                    }
                    return Err(f);
                }
            };
            if resp.status().is_success() {
                self.current.store(i, Ordering::Relaxed);
                return Ok(resp);
            }
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) if body.error.code == "NotLeader" => {
                    failure = Some(Failure::from_api(status, body.error));
                }
                Ok(body) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Err(Failure::from_api(status, body.error));
                }
                Err(_) => {
                    return Err(Failure::new(format!(
                        "the server answered {status}: {text}"
                    )));
                }
            }
        }
        Err(failure.unwrap_or_else(|| Failure::new("no berth server to send the request to")))
    }

    /// A JSON request with a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Failure> {
        let resp = self.send(method, path, body).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return serde_json::from_value(serde_json::Value::Null)
                .map_err(|e| Failure::new(e.to_string()));
        }
        resp.json()
            .await
            .map_err(|e| Failure::new(format!("the server's answer is not readable: {e}")))
    }

    /// GET returning JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call(Method::GET, path, None::<&()>).await
    }
}

/// A client for `base`: for plain http it skips loading the system's root certificates
/// (milliseconds on every CLI call); for https it trusts the system's roots, or only the PEM
/// certificate in `BERTH_CA_CERT` (for a self-signed certificate).
pub fn http_client(base: &str) -> Result<reqwest::Client, Failure> {
    let mut b = reqwest::Client::builder();
    if !base.starts_with("https://") {
        b = b.tls_certs_only(std::iter::empty());
    } else if let Some(path) = std::env::var_os("BERTH_CA_CERT") {
        let pem = std::fs::read(&path).map_err(|e| {
            Failure::new(format!(
                "cannot read BERTH_CA_CERT {}: {e}",
                path.to_string_lossy()
            ))
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Failure::new(format!("BERTH_CA_CERT is not a PEM certificate: {e}")))?;
        b = b.tls_certs_only([ca]);
    }
    b.build()
        .map_err(|e| Failure::new(format!("cannot build an HTTP client: {e}")))
}

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berth_server_may_name_several_servers() {
        assert_eq!(
            bases("http://a:8700/, http://b:8700 ,"),
            ["http://a:8700", "http://b:8700"]
        );
        assert_eq!(bases("http://a:8700"), ["http://a:8700"]);
        assert!(Client::new(bases(" , "), "t".into()).is_err());
    }
}
