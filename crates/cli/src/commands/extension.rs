//! `berth extension render | create | show | update | delete`: the in-cluster install, with
//! `az k8s-extension` settings. Render prints the manifests; the others act on the cluster the
//! kubeconfig names (health checks first, server-side apply, readiness).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_core::extension::config::ExtensionConfig;
use berth_core::extension::render::{Credentials, render, to_yaml};
use berth_core::spec::compute::KubernetesTarget;
use berth_scheduler::backend::kubernetes::apply;
use berth_scheduler::backend::kubernetes::cluster::{self, Cluster};
use berth_scheduler::backend::kubernetes::install::{self, Component, Record};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{ExtensionCommand, ExtensionSettings, ExtensionTarget, Format, Readiness};
use crate::failure::Failure;
use crate::output::Printer;

fn pairs(items: &[String], flag: &str) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            Failure::new(format!("{flag} `{item}` has no `=`"))
                .hint(format!("write {flag} key=value"))
        })?;
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::new(format!("{flag}: `{k}` is given twice")));
        }
    }
    Ok(out)
}

/// Reads protected settings; like az, PEM settings name local files whose contents are sent.
fn protected_settings(items: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut protected = pairs(items, "--config-protected")?;
    for key in ["sslCertPemFile", "sslKeyPemFile"] {
        if let Some(path) = protected.get(key).cloned() {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| Failure::new(format!("{key}={path}: cannot read it: {e}")))?;
            if !pem.contains("-----BEGIN") {
                return Err(Failure::new(format!("{key}={path} is not a PEM file")));
            }
            if pem.contains("ENCRYPTED") {
                return Err(Failure::new(format!(
                    "{key}={path}: keys with a passphrase are not supported"
                )));
            }
            protected.insert(key.to_string(), pem);
        }
    }
    Ok(protected)
}

fn config(
    public: &BTreeMap<String, String>,
    protected: &BTreeMap<String, String>,
) -> Result<ExtensionConfig, Failure> {
    let cfg = ExtensionConfig::parse(public, protected).map_err(|e| Failure::new(e.message))?;
    for note in &cfg.notes {
        eprintln!("note: {note}");
    }
    Ok(cfg)
}

fn new_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kubeconfig's path: --kubeconfig, else $KUBECONFIG's first entry, else ~/.kube/config.
fn kubeconfig_path(target: &ExtensionTarget) -> PathBuf {
    if let Some(p) = &target.kubeconfig {
        return p.clone();
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".kube/config")
}

async fn connect(target: &ExtensionTarget) -> Result<Cluster, Failure> {
    let path = kubeconfig_path(target);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::new(format!(
            "cannot read the kubeconfig {}: {e}",
            path.display()
        ))
        .hint("pass --kubeconfig <file>, or set KUBECONFIG")
    })?;
    cluster::connect(&KubernetesTarget {
        kubeconfig: text,
        context: target.context.clone(),
        namespace: berth_core::extension::render::NAMESPACE.into(),
        server_url: None,
        in_cluster: false,
        berth_image: None,
    })
    .await
    .map_err(|m| Failure::new(format!("{}: {m}", path.display())))
}

async fn installed(cluster: &Cluster, name: &str) -> Result<Record, Failure> {
    match install::read_record(&cluster.client)
        .await
        .map_err(Failure::from)?
    {
        Some(r) if r.name == name => Ok(r),
        Some(r) => Err(Failure::new(format!(
            "extension `{name}` is not installed in the cluster at {}; `{}` is",
            cluster.server, r.name
        ))
        .hint(format!("use --name {}", r.name))),
        None => Err(Failure::new(format!(
            "extension `{name}` is not installed in the cluster at {}",
            cluster.server
        ))
        .hint("install it with `berth extension create`")),
    }
}

/// The manifests an existing install was made from (its settings, token and TLS pair).
async fn rendered_from(
    cluster: &Cluster,
    settings: &BTreeMap<String, String>,
    protected: Option<BTreeMap<String, String>>,
) -> Result<(ExtensionConfig, Vec<Value>), Failure> {
    let kept = install::existing_secrets(&cluster.client).await;
    let protected = protected.unwrap_or_else(|| {
        let mut p = BTreeMap::new();
        if let Some((cert, key)) = kept.tls {
            p.insert("sslCertPemFile".to_string(), cert);
            p.insert("sslKeyPemFile".to_string(), key);
        }
        if let Some(url) = kept.store_url {
            p.insert("storeUrl".to_string(), url);
        }
        p
    });
    let cfg = config(settings, &protected)?;
    let token = kept.token.unwrap_or_else(new_token);
    let docs = render_with(&cfg, &token);
    Ok((cfg, docs))
}

fn check(findings: &[install::Finding]) -> Result<(), Failure> {
    for f in findings.iter().filter(|f| !f.is_critical()) {
        eprintln!("warning: {} {}: {}", f.code, f.check, f.message);
    }
    let critical: Vec<String> = findings
        .iter()
        .filter(|f| f.is_critical())
        .map(|f| format!("{} {}: {}", f.code, f.check, f.message))
        .collect();
    if critical.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "the health check found problems, so nothing was installed:\n  {}",
        critical.join("\n  ")
    )))
}

/// Waits until every component is ready, printing each change of readiness.
async fn wait_ready(cluster: &Cluster, docs: &[Value], timeout: u64) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last: Vec<String> = Vec::new();
    loop {
        let components = install::components(&cluster.client, docs)
            .await
            .map_err(Failure::from)?;
        let lines: Vec<String> = components
            .iter()
            .filter(|c| c.ready.contains('/'))
            .map(|c| match &c.reason {
                Some(r) => format!("{} {} ({r})", c.name, c.ready),
                None => format!("{} {}", c.name, c.ready),
            })
            .collect();
        if lines != last {
            for l in &lines {
                eprintln!("  {l}");
            }
            last = lines;
        }
        if install::provisioning_state(&components) == "Succeeded" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            return Err(Failure::new(format!(
                "the extension was applied but is not ready after {timeout}s: {}",
                last.join("; ")
            ))
            .hint("`berth extension show` says which component waits and why"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtensionView {
    name: String,
    extension_type: &'static str,
    provisioning_state: &'static str,
    version: String,
    release_train: &'static str,
    cluster: String,
    configuration_settings: BTreeMap<String, String>,
    components: Vec<Component>,
}

const COLUMNS: [(&str, &str); 4] = [
    ("Name", "name"),
    ("ProvisioningState", "provisioningState"),
    ("Version", "version"),
    ("ReleaseTrain", "releaseTrain"),
];

async fn show(cluster: &Cluster, name: &str, out: &Printer) -> Result<(), Failure> {
    let record = installed(cluster, name).await?;
    let (_, docs) = rendered_from(cluster, &record.settings, None).await?;
    let components = install::components(&cluster.client, &docs)
        .await
        .map_err(Failure::from)?;
    let view = ExtensionView {
        name: record.name,
        extension_type: "Berth",
        provisioning_state: install::provisioning_state(&components),
        version: record.version,
        release_train: "stable",
        cluster: cluster.server.clone(),
        configuration_settings: record.settings,
        components,
    };
    if out.format == Format::Table && out.query.is_none() {
        out.print(&view, &COLUMNS)?;
        for c in &view.components {
            let reason = c
                .reason
                .as_deref()
                .map(|r| format!("  {r}"))
                .unwrap_or_default();
            println!("  {:<50} {}{reason}", c.name, c.ready);
        }
        return Ok(());
    }
    out.print(&view, &COLUMNS)
}

/// Runs an extension verb.
pub async fn run(cmd: ExtensionCommand, out: &Printer) -> Result<i32, Failure> {
    match cmd {
        ExtensionCommand::Render {
            target: _,
            settings,
        } => {
            let cfg = config(
                &pairs(&settings.config, "--config")?,
                &protected_settings(&settings.config_protected)?,
            )?;
            let token = new_token();
            let docs = render_with(&cfg, &token);
            match out.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&docs).map_err(|e| Failure::new(e.to_string()))?
                ),
                _ => print!("{}", to_yaml(&docs).map_err(Failure::new)?),
            }
        }
        ExtensionCommand::Create {
            target,
            settings,
            wait,
        } => create(&target, &settings, wait, out).await?,
        ExtensionCommand::Show { target } => {
            let cluster = connect(&target).await?;
            show(&cluster, &target.name, out).await?;
        }
        ExtensionCommand::Update {
            target,
            settings,
            wait,
        } => update(&target, &settings, wait, out).await?,
        ExtensionCommand::Delete { target, yes: _ } => {
            let cluster = connect(&target).await?;
            let record = installed(&cluster, &target.name).await?;
            let mut settings = record.settings.clone();
            let docs = match rendered_from(&cluster, &settings, None).await {
                Ok((_, d)) => d,
                Err(_) => {
                    // Its TLS Secret is gone already: render without it to find the rest.
                    settings.insert("allowInsecureConnections".into(), "True".into());
                    rendered_from(&cluster, &settings, Some(BTreeMap::new()))
                        .await?
                        .1
                }
            };
            let deleted = install::delete_all(&cluster.client, &docs, &record)
                .await
                .map_err(Failure::from)?;
            for d in &deleted {
                eprintln!("deleted {d}");
            }
            eprintln!(
                "Deleted extension {} ({} objects).",
                record.name,
                deleted.len()
            );
        }
    }
    Ok(0)
}

async fn create(
    target: &ExtensionTarget,
    settings: &ExtensionSettings,
    wait: Readiness,
    out: &Printer,
) -> Result<(), Failure> {
    let public = pairs(&settings.config, "--config")?;
    let cfg = config(&public, &protected_settings(&settings.config_protected)?)?;
    let cluster = connect(target).await?;
    if let Some(r) = install::read_record(&cluster.client)
        .await
        .map_err(Failure::from)?
    {
        return Err(Failure::new(format!(
            "extension `{}` is already installed in the cluster at {} (Berth {})",
            r.name, cluster.server, r.version
        ))
        .hint("change its settings with `berth extension update`"));
    }
    check(&install::health_check(&cluster.client, &cfg).await)?;
    let record = Record {
        name: target.name.clone(),
        settings: public,
        created_namespace: !install::namespace_exists(&cluster.client)
            .await
            .map_err(Failure::from)?,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let token = new_token();
    let docs = render_with(&cfg, &token);
    install::apply_all(&cluster.client, &docs, &record, |l| {
        eprintln!("applied {l}")
    })
    .await
    .map_err(|m| Failure::new(format!("the API server refused {m}")))?;
    if !wait.no_wait {
        eprintln!("Waiting for the components to be ready (--no-wait to skip)...");
        wait_ready(&cluster, &docs, wait.timeout).await?;
    }
    eprintln!(
        "Next, attach the cluster as a compute through the installed server:
  kubectl -n {ns} port-forward svc/berth-server 8700 &
  export BERTH_SERVER=http://localhost:8700
  export BERTH_TOKEN=$(kubectl -n {ns} get secret berth-api-token -o jsonpath='{{.data.token}}' | base64 -d)
  berth compute attach --type Kubernetes --name aks-compute --in-cluster --namespace azureml-workloads --create-namespace",
        ns = berth_core::extension::render::NAMESPACE
    );
    show(&cluster, &target.name, out).await
}

async fn update(
    target: &ExtensionTarget,
    settings: &ExtensionSettings,
    wait: Readiness,
    out: &Printer,
) -> Result<(), Failure> {
    let cluster = connect(target).await?;
    let mut record = installed(&cluster, &target.name).await?;
    let (_, old_docs) = rendered_from(&cluster, &record.settings, None).await?;
    let mut merged = record.settings.clone();
    merged.extend(pairs(&settings.config, "--config")?);
    let protected = if settings.config_protected.is_empty() {
        None
    } else {
        Some(protected_settings(&settings.config_protected)?)
    };
    let (cfg, docs) = rendered_from(&cluster, &merged, protected).await?;
    check(&install::health_check(&cluster.client, &cfg).await)?;
    let before: Vec<Option<String>> = versions(&cluster, &docs).await;
    record.settings = merged;
    record.version = env!("CARGO_PKG_VERSION").into();
    install::apply_all(&cluster.client, &docs, &record, |_| {})
        .await
        .map_err(|m| Failure::new(format!("the API server refused {m}")))?;
    let after = versions(&cluster, &docs).await;
    for ((doc, b), a) in docs.iter().zip(&before).zip(&after) {
        let what = match (b, a) {
            (None, _) => "created",
            (Some(b), Some(a)) if b == a => "unchanged",
            _ => "configured",
        };
        eprintln!("{} {what}", apply::label(doc));
    }
    let labels: Vec<String> = docs.iter().map(apply::label).collect();
    for old in old_docs
        .iter()
        .filter(|d| !labels.contains(&apply::label(d)))
    {
        if apply::delete(&cluster.client, old)
            .await
            .map_err(Failure::from)?
        {
            eprintln!("{} deleted", apply::label(old));
        }
    }
    if !wait.no_wait {
        wait_ready(&cluster, &docs, wait.timeout).await?;
    }
    show(&cluster, &target.name, out).await
}

async fn versions(cluster: &Cluster, docs: &[Value]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for d in docs {
        let v = apply::get(&cluster.client, d)
            .await
            .ok()
            .flatten()
            .and_then(|o| o.metadata.resource_version);
        out.push(v);
    }
    out
}

/// The manifests for `cfg`, with the secrets derived from the API token.
fn render_with(cfg: &ExtensionConfig, token: &str) -> Vec<Value> {
    let (router_token, store_password) = (
        berth_server::auth::router_token(token),
        berth_server::auth::store_password(token),
    );
    render(
        cfg,
        &Credentials {
            api_token: token,
            router_token: &router_token,
            store_password: &store_password,
        },
    )
}
