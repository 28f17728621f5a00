//! `berth environment ...`: registered assets, created from Azure ML's YAML files.

use std::path::{Path, PathBuf};

use berth_core::api::AssetCreateRequest;
use berth_core::spec::environment::EnvironmentRecord;
use reqwest::Method;

use crate::cli::EnvironmentCommand;
use crate::client::{Client, seg};
use crate::failure::Failure;
use crate::output::Printer;

const ENV_COLUMNS: [(&str, &str); 5] = [
    ("Name", "name"),
    ("Version", "version"),
    ("Python", "python.python"),
    ("Image", "image"),
    ("Created", "created_at"),
];

/// The request for a job or asset file: its text, its folder (for relative paths) and the
/// overrides, `--name` and `--version` among them.
pub fn file_request(
    file: &Path,
    name: Option<String>,
    version: Option<String>,
    mut set: Vec<String>,
) -> Result<AssetCreateRequest, Failure> {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
    let abs = std::path::absolute(file).map_err(|e| Failure::new(e.to_string()))?;
    let base_dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    set.extend(name.map(|n| format!("name={n}")));
    set.extend(version.map(|v| format!("version={v}")));
    Ok(AssetCreateRequest {
        file: file.display().to_string(),
        yaml,
        base_dir: base_dir.to_string_lossy().into_owned(),
        set,
    })
}

/// `berth environment ...`
pub async fn environment(
    client: &Client,
    out: &Printer,
    cmd: EnvironmentCommand,
) -> Result<i32, Failure> {
    match cmd {
        EnvironmentCommand::Create {
            file,
            name,
            version,
            set,
        } => {
            let req = file_request(&file, name, version, set)?;
            let created: EnvironmentRecord = client
                .call(Method::POST, "/api/environments", Some(&req))
                .await?;
            out.print(&created, &ENV_COLUMNS)?;
        }
        EnvironmentCommand::List { name } => {
            let path = match &name {
                Some(n) => format!("/api/environments?name={}", seg(n)),
                None => "/api/environments".into(),
            };
            out.print(
                &client.get::<Vec<EnvironmentRecord>>(&path).await?,
                &ENV_COLUMNS,
            )?;
        }
        EnvironmentCommand::Show {
            name,
            version,
            label,
        } => {
            let version = version.or(label).unwrap_or_else(|| "latest".into());
            let path = format!(
                "/api/environments/{}/versions/{}",
                seg(&name),
                seg(&version)
            );
            out.print(&client.get::<EnvironmentRecord>(&path).await?, &ENV_COLUMNS)?;
        }
    }
    Ok(0)
}
