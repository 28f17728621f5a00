//! The typed HTTP client of the control-plane API, and how the CLI finds the server.

use std::path::{Path, PathBuf};

use berth_core::api::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::failure::Failure;

/// A connection to a Berth server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
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
            let base = base.trim_end_matches('/').to_string();
            return Ok(Client {
                http: http_client(&base)?,
                base,
                token: token.trim().to_string(),
            });
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
            let base = base.trim_end_matches('/').to_string();
            return Ok(Client {
                http: http_client(&base)?,
                base,
                token,
            });
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
        Ok(Client {
            http: http_client(&info.api_url)?,
            base: info.api_url,
            token: token.trim().to_string(),
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends a request and returns the raw response, turning API errors into failures.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, Failure> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Failure::new(format!(
                "cannot reach the berth server at {}: {}",
                self.base,
                root_cause(&e)
            ))
            .hint("is `berth server` running? `berth server &` starts one")
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Failure::from_api(status, body.error),
            Err(_) => Failure::new(format!("the server answered {status}: {text}")),
        })
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
