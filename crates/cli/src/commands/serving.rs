//! `berth online-endpoint|online-deployment ...`.

use std::path::Path;
use std::time::Duration;

use berth_core::api::{DeploymentView, EndpointView};
use berth_core::serving::ProvisioningState;
use berth_core::spec::endpoint::AuthMode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{DeploymentCommand, DeploymentTarget, EndpointCommand};
use crate::client::{Client, seg};
use crate::failure::Failure;
use crate::output::Printer;

const EP_COLUMNS: [(&str, &str); 4] = [
    ("Name", "name"),
    ("State", "provisioning_state"),
    ("Traffic", "traffic"),
    ("Scoring URI", "scoring_uri"),
];
const DEP_COLUMNS: [(&str, &str); 6] = [
    ("Name", "name"),
    ("Endpoint", "endpoint_name"),
    ("State", "provisioning_state"),
    ("Ready", "ready_replicas"),
    ("Instances", "instance_count"),
    ("Reason", "reason"),
];

fn read(file: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))
}

/// `berth online-endpoint ...`
pub async fn endpoint(
    client: &Client,
    out: &Printer,
    cmd: EndpointCommand,
) -> Result<i32, Failure> {
    match cmd {
        EndpointCommand::Create {
            file,
            name,
            auth_mode,
            mut set,
        } => {
            set.extend(name.map(|n| format!("name={n}")));
            set.extend(auth_mode.map(|m| format!("auth_mode={m}")));
            let body =
                json!({"file": file.display().to_string(), "yaml": read(&file)?, "set": set});
            let created: EndpointView = client
                .call(Method::POST, "/api/endpoints", Some(&body))
                .await?;
            print_notes(&created.notes);
            out.print(&created, &EP_COLUMNS)?;
        }
        EndpointCommand::Show { name } => out.print(
            &client
                .get::<EndpointView>(&format!("/api/endpoints/{}", seg(&name)))
                .await?,
            &EP_COLUMNS,
        )?,
        EndpointCommand::List => out.print(
            &client.get::<Vec<EndpointView>>("/api/endpoints").await?,
            &EP_COLUMNS,
        )?,
        EndpointCommand::Update {
            name,
            traffic,
            mirror_traffic,
        } => {
            let body = json!({"traffic": traffic, "mirror_traffic": mirror_traffic});
            out.print(
                &client
                    .call::<EndpointView>(
                        Method::PATCH,
                        &format!("/api/endpoints/{}", seg(&name)),
                        Some(&body),
                    )
                    .await?,
                &EP_COLUMNS,
            )?;
        }
        EndpointCommand::GetCredentials { name } => show_credentials(client, out, &name).await?,
        EndpointCommand::RegenerateKeys { name, key_type } => {
            regenerate_keys(client, out, &name, &key_type).await?
        }
        EndpointCommand::Delete { name, yes: _ } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/api/endpoints/{}", seg(&name)),
                    None::<&()>,
                )
                .await?;
            eprintln!("Deleted online endpoint {name} and its deployments.");
        }
        EndpointCommand::Invoke {
            name,
            request_file,
            deployment_name,
        } => return invoke(client, &name, &request_file, deployment_name).await,
    }
    Ok(0)
}

/// Prints the endpoint's keys, or a fresh token for an `aml_token` endpoint.
async fn show_credentials(client: &Client, out: &Printer, name: &str) -> Result<(), Failure> {
    let (creds, token) = credentials(client, name).await?;
    let columns: &[(&str, &str)] = if token {
        &[
            ("accessToken", "accessToken"),
            ("expiryTimeUtc", "expiryTimeUtc"),
        ]
    } else {
        &[
            ("primaryKey", "primaryKey"),
            ("secondaryKey", "secondaryKey"),
        ]
    };
    out.print(&creds, columns)
}

/// Makes a new primary or secondary key and prints both.
async fn regenerate_keys(
    client: &Client,
    out: &Printer,
    name: &str,
    key_type: &str,
) -> Result<(), Failure> {
    let body = json!({"keyType": key_type});
    let keys: Value = client
        .call(
            Method::POST,
            &format!("/api/endpoints/{}/regenerateKeys", seg(name)),
            Some(&body),
        )
        .await?;
    out.print(
        &keys,
        &[
            ("primaryKey", "primaryKey"),
            ("secondaryKey", "secondaryKey"),
        ],
    )
}

/// The endpoint's keys, or a fresh token for an `aml_token` endpoint; true for a token.
async fn credentials(client: &Client, name: &str) -> Result<(Value, bool), Failure> {
    let ep: EndpointView = client.get(&format!("/api/endpoints/{}", seg(name))).await?;
    let token = ep.auth_mode == AuthMode::AmlToken;
    let path = if token { "token" } else { "listKeys" };
    let creds = client
        .call(
            Method::POST,
            &format!("/api/endpoints/{}/{path}", seg(name)),
            None::<&()>,
        )
        .await?;
    Ok((creds, token))
}

async fn invoke(
    client: &Client,
    name: &str,
    request_file: &Path,
    deployment: Option<String>,
) -> Result<i32, Failure> {
    let body = read(request_file)?;
    let ep: EndpointView = client.get(&format!("/api/endpoints/{}", seg(name))).await?;
    let (creds, token) = credentials(client, name).await?;
    let uri = ep.scoring_uri.as_str();
    let key = creds[if token { "accessToken" } else { "primaryKey" }]
        .as_str()
        .unwrap_or_default();
    let http = crate::client::http_client(uri)?;
    let mut req = http
        .post(uri)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(d) = deployment {
        req = req.header("azureml-model-deployment", d);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::new(format!("cannot reach {uri}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{text}");
        Ok(0)
    } else {
        let reason = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v["error"]["message"]
                    .as_str()
                    .or(v["message"].as_str())
                    .map(str::to_string)
            })
            .unwrap_or(text);
        Err(Failure::new(format!(
            "the endpoint answered {status}: {reason}"
        )))
    }
}

/// `berth online-deployment ...`
pub async fn deployment(
    client: &Client,
    out: &Printer,
    cmd: DeploymentCommand,
) -> Result<i32, Failure> {
    match cmd {
        DeploymentCommand::Create {
            file,
            target,
            all_traffic,
            no_wait,
        } => {
            let how = Submit {
                update: false,
                all_traffic,
                no_wait,
            };
            return submit(client, out, Some(&file), target, how).await;
        }
        DeploymentCommand::Update {
            file,
            target,
            no_wait,
        } => {
            let how = Submit {
                update: true,
                all_traffic: false,
                no_wait,
            };
            return submit(client, out, file.as_deref(), target, how).await;
        }
        DeploymentCommand::Show {
            name,
            endpoint_name,
        } => out.print(
            &client
                .get::<DeploymentView>(&deployment_path(&endpoint_name, &name))
                .await?,
            &DEP_COLUMNS,
        )?,
        DeploymentCommand::List { endpoint_name } => out.print(
            &client
                .get::<Vec<DeploymentView>>(&format!(
                    "/api/endpoints/{}/deployments",
                    seg(&endpoint_name)
                ))
                .await?,
            &DEP_COLUMNS,
        )?,
        DeploymentCommand::GetLogs {
            name,
            endpoint_name,
            lines,
        } => {
            let path = format!(
                "{}/logs?lines={lines}",
                deployment_path(&endpoint_name, &name)
            );
            let resp = client.send(Method::GET, &path, None::<&()>).await?;
            print!("{}", resp.text().await.unwrap_or_default());
        }
        DeploymentCommand::Delete {
            name,
            endpoint_name,
            yes: _,
        } => {
            let path = deployment_path(&endpoint_name, &name);
            client.send(Method::DELETE, &path, None::<&()>).await?;
            eprintln!("Deleted online deployment {name}.");
        }
    }
    Ok(0)
}

fn deployment_path(endpoint: &str, name: &str) -> String {
    format!("/api/endpoints/{}/deployments/{}", seg(endpoint), seg(name))
}

/// How `submit` sends a deployment.
struct Submit {
    update: bool,
    all_traffic: bool,
    no_wait: bool,
}

fn print_notes(notes: &[String]) {
    for note in notes {
        eprintln!("note: {note}");
    }
}

/// Creates or updates a deployment, then waits until it is ready or failed, showing progress.
/// `--name`/`--endpoint-name` override the file's; an update without a file sets fields of
/// the current revision's.
async fn submit(
    client: &Client,
    out: &Printer,
    file: Option<&Path>,
    target: DeploymentTarget,
    how: Submit,
) -> Result<i32, Failure> {
    let Submit {
        update,
        all_traffic,
        no_wait,
    } = how;
    let DeploymentTarget {
        name,
        endpoint_name,
        mut set,
    } = target;
    let (yaml, file_name, base_dir) = match file {
        Some(f) => {
            let abs = std::path::absolute(f).map_err(|e| Failure::new(e.to_string()))?;
            let base = abs.parent().map(|p| p.to_string_lossy().into_owned());
            (read(f)?, f.display().to_string(), base.unwrap_or_default())
        }
        None => (String::new(), String::new(), String::new()),
    };
    let field = |key: &str, given: Option<String>| {
        given.or_else(|| yaml_field(&yaml, key)).ok_or_else(|| {
            let flag = key.replace('_', "-");
            match file {
                Some(f) => Failure::new(format!("{}: the deployment has no `{key}`", f.display()))
                    .hint(format!("add {key}: <value>, or pass --{flag}")),
                None => Failure::new(format!("--{flag} is needed without --file")),
            }
        })
    };
    let endpoint = field("endpoint_name", endpoint_name.clone())?;
    let deployment = field("name", name.clone())?;
    set.extend(name.map(|n| format!("name={n}")));
    set.extend(endpoint_name.map(|e| format!("endpoint_name={e}")));
    let body = json!({"file": file_name, "yaml": yaml, "base_dir": base_dir, "set": set, "all_traffic": all_traffic});
    let collection = format!("/api/endpoints/{}/deployments", seg(&endpoint));
    let created: DeploymentView = if update {
        client
            .call(
                Method::PUT,
                &format!("{collection}/{}", seg(&deployment)),
                Some(&body),
            )
            .await?
    } else {
        client.call(Method::POST, &collection, Some(&body)).await?
    };
    let name = created.spec.name.clone();
    print_notes(&created.spec.notes);
    if no_wait {
        out.print(&created, &DEP_COLUMNS)?;
        return Ok(0);
    }
    let path = format!("{collection}/{}", seg(&name));
    let verb = if update { "Updating" } else { "Creating" };
    eprintln!("{verb} deployment {name} on {endpoint}: starting replicas, running init()...");
    wait_ready(client, out, &path, &name, &endpoint).await
}

/// Polls a deployment until it succeeds or fails, saying why it waits when it does.
async fn wait_ready(
    client: &Client,
    out: &Printer,
    path: &str,
    name: &str,
    endpoint: &str,
) -> Result<i32, Failure> {
    let started = std::time::Instant::now();
    let mut said = String::new();
    loop {
        let d: DeploymentView = client.get(path).await?;
        if let Some(why) = &d.reason
            && d.provisioning_state != ProvisioningState::Failed
            && *why != said
        {
            eprintln!("  waiting: {why}");
            said = why.clone();
        }
        match d.provisioning_state {
            ProvisioningState::Succeeded => {
                eprintln!(
                    "Deployment {name} is ready ({} replica(s), {:.1}s).",
                    d.ready_replicas,
                    started.elapsed().as_secs_f64()
                );
                out.print(&d, &DEP_COLUMNS)?;
                return Ok(0);
            }
            ProvisioningState::Failed => {
                out.print(&d, &DEP_COLUMNS)?;
                let reason = d.reason.as_deref().unwrap_or("see its logs");
                return Err(Failure::new(format!("deployment {name} failed: {reason}"))
                    .hint(format!("`berth online-deployment get-logs --name {name} --endpoint-name {endpoint}` shows the replicas' logs")));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A top-level scalar of a YAML file, read loosely (the server parses the file properly).
fn yaml_field(yaml: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    yaml.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .filter(|v| !v.is_empty())
}
