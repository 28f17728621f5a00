//! `berth environment|component|model|data ...`: versioned assets, created from Azure ML's
//! YAML files.

use std::path::{Path, PathBuf};

use berth_core::api::AssetCreateRequest;
use berth_core::serving::ModelRecord;
use berth_core::spec::asset::DataRecord;
use berth_core::spec::component::ComponentRecord;
use berth_core::spec::environment::EnvironmentRecord;
use reqwest::Method;

use crate::cli::{
    AssetCreateArgs, AssetShowArgs, ComponentCommand, DataCommand, EnvironmentCommand, ModelCommand,
};
use crate::client::{Client, seg};
use crate::failure::Failure;
use crate::output::Printer;

const MODEL_COLUMNS: [(&str, &str); 5] = [
    ("Name", "name"),
    ("Version", "version"),
    ("Type", "type"),
    ("Files", "files"),
    ("Created", "created_at"),
];
const DATA_COLUMNS: [(&str, &str); 5] = [
    ("Name", "name"),
    ("Version", "version"),
    ("Type", "type"),
    ("Path", "path"),
    ("Created", "created_at"),
];
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
        parent_job_name: None,
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
        EnvironmentCommand::List { name } => out.print(
            &client
                .get::<Vec<EnvironmentRecord>>(&list_path("environments", name.as_deref()))
                .await?,
            &ENV_COLUMNS,
        )?,
        EnvironmentCommand::Show(a) => out.print(
            &client
                .get::<EnvironmentRecord>(&show_path("environments", &a))
                .await?,
            &ENV_COLUMNS,
        )?,
    }
    Ok(0)
}

const COMPONENT_COLUMNS: [(&str, &str); 5] = [
    ("Name", "name"),
    ("Version", "version"),
    ("Type", "spec.type"),
    ("Display name", "spec.display_name"),
    ("Created", "created_at"),
];

/// `berth component ...`
pub async fn component(
    client: &Client,
    out: &Printer,
    cmd: ComponentCommand,
) -> Result<i32, Failure> {
    match cmd {
        ComponentCommand::Create {
            file,
            name,
            version,
            set,
        } => {
            let req = file_request(&file, name, version, set)?;
            let created: ComponentRecord = client
                .call(Method::POST, "/api/components", Some(&req))
                .await?;
            out.print(&created, &COMPONENT_COLUMNS)?;
        }
        ComponentCommand::List { name } => out.print(
            &client
                .get::<Vec<ComponentRecord>>(&list_path("components", name.as_deref()))
                .await?,
            &COMPONENT_COLUMNS,
        )?,
        ComponentCommand::Show(a) => out.print(
            &client
                .get::<ComponentRecord>(&show_path("components", &a))
                .await?,
            &COMPONENT_COLUMNS,
        )?,
    }
    Ok(0)
}

/// The request for a model or data asset: its file (if any) with the flags as overrides. A
/// `--path` flag is relative to the current folder, a `path:` in the file to the file's.
fn asset_request(
    a: AssetCreateArgs,
    asset_type: Option<String>,
) -> Result<AssetCreateRequest, Failure> {
    let mut set = Vec::new();
    if let Some(p) = a.path {
        let local = !p.contains("://") && !p.starts_with("azureml:");
        set.push(if local {
            let abs = std::path::absolute(&p).map_err(|e| Failure::new(e.to_string()))?;
            format!("path={}", abs.display())
        } else {
            format!("path={p}")
        });
    }
    set.extend(asset_type.map(|t| format!("type={t}")));
    set.extend(a.description.map(|d| format!("description={d}")));
    set.extend(a.set);
    match a.file {
        Some(file) => file_request(&file, a.name, a.version, set),
        None => {
            let cwd = std::env::current_dir().map_err(|e| Failure::new(e.to_string()))?;
            set.extend(a.name.map(|n| format!("name={n}")));
            set.extend(a.version.map(|v| format!("version={v}")));
            Ok(AssetCreateRequest {
                file: "(flags)".into(),
                yaml: String::new(),
                base_dir: cwd.to_string_lossy().into_owned(),
                set,
                parent_job_name: None,
            })
        }
    }
}

fn show_path(group: &str, a: &AssetShowArgs) -> String {
    let version = a
        .version
        .clone()
        .or_else(|| a.label.clone())
        .unwrap_or_else(|| "latest".into());
    format!("/api/{group}/{}/versions/{}", seg(&a.name), seg(&version))
}

fn list_path(group: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("/api/{group}?name={}", seg(n)),
        None => format!("/api/{group}"),
    }
}

/// `berth model ...`
pub async fn model(client: &Client, out: &Printer, cmd: ModelCommand) -> Result<i32, Failure> {
    match cmd {
        ModelCommand::Create { asset, model_type } => {
            let req = asset_request(asset, model_type)?;
            let created: ModelRecord = client.call(Method::POST, "/api/models", Some(&req)).await?;
            out.print(&created, &MODEL_COLUMNS)?;
        }
        ModelCommand::List { name } => out.print(
            &client
                .get::<Vec<ModelRecord>>(&list_path("models", name.as_deref()))
                .await?,
            &MODEL_COLUMNS,
        )?,
        ModelCommand::Show(a) => out.print(
            &client.get::<ModelRecord>(&show_path("models", &a)).await?,
            &MODEL_COLUMNS,
        )?,
    }
    Ok(0)
}

/// `berth data ...`
pub async fn data(client: &Client, out: &Printer, cmd: DataCommand) -> Result<i32, Failure> {
    match cmd {
        DataCommand::Create { asset, data_type } => {
            let req = asset_request(asset, data_type)?;
            let created: DataRecord = client.call(Method::POST, "/api/data", Some(&req)).await?;
            out.print(&created, &DATA_COLUMNS)?;
        }
        DataCommand::List { name } => out.print(
            &client
                .get::<Vec<DataRecord>>(&list_path("data", name.as_deref()))
                .await?,
            &DATA_COLUMNS,
        )?,
        DataCommand::Show(a) => out.print(
            &client.get::<DataRecord>(&show_path("data", &a)).await?,
            &DATA_COLUMNS,
        )?,
    }
    Ok(0)
}
