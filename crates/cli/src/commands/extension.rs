//! `berth extension render`: the manifests of the in-cluster install from `az k8s-extension`
//! settings.

use std::collections::BTreeMap;

use berth_core::extension::config::ExtensionConfig;
use berth_core::extension::render::{render, to_yaml};

use crate::cli::ExtensionCommand;
use crate::failure::Failure;

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

/// Runs an extension verb.
pub fn run(cmd: ExtensionCommand, format: crate::cli::Format) -> Result<i32, Failure> {
    match cmd {
        ExtensionCommand::Render {
            name: _,
            cluster_name: _,
            config,
            config_protected,
        } => {
            let public = pairs(&config, "--config")?;
            let mut protected = pairs(&config_protected, "--config-protected")?;
            // Like az: PEM settings name local files; their contents go into the Secret.
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
            let cfg =
                ExtensionConfig::parse(&public, &protected).map_err(|e| Failure::new(e.message))?;
            for note in &cfg.notes {
                eprintln!("note: {note}");
            }
            let token: String = rand::random::<[u8; 32]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let docs = render(&cfg, &token);
            match format {
                crate::cli::Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&docs).map_err(|e| Failure::new(e.to_string()))?
                ),
                _ => print!("{}", to_yaml(&docs).map_err(Failure::new)?),
            }
            Ok(0)
        }
    }
}
