//! `berth instance-type|compute|datastore ...`.

use std::path::{Path, PathBuf};

use berth_core::api::{ApplyRequest, ComputeView, DatastoreView, InstanceTypeView};
use berth_core::spec::compute::{ComputeKind, ComputeSpec, KubernetesTarget};
use berth_core::spec::datastore::{DatastoreLocation, DatastoreSpec};
use berth_core::yaml::Source;
use reqwest::Method;

use crate::cli::{ComputeCommand, DatastoreCommand, InstanceTypeCommand};
use crate::client::{Client, seg};
use crate::failure::Failure;
use crate::output::Printer;

const IT_COLUMNS: [(&str, &str); 6] = [
    ("Name", "name"),
    ("CPU request", "requests.cpu"),
    ("Memory request", "requests.memory"),
    ("CPU limit", "limits.cpu"),
    ("Memory limit", "limits.memory"),
    ("GPUs", "limits.gpus"),
];
const COMPUTE_COLUMNS: [(&str, &str); 5] = [
    ("Name", "name"),
    ("Type", "type"),
    ("State", "provisioning_state"),
    ("Free CPU", "free.cpu"),
    ("Free GPUs", "free.gpus"),
];
const DS_COLUMNS: [(&str, &str); 3] = [("Name", "name"), ("Type", "type"), ("Path", "path")];

fn read(file: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))
}

fn spec_failure(e: berth_core::yaml::SpecError) -> Failure {
    let mut f = Failure::new(match &e.position {
        Some(p) => format!("{p}: {}", e.message),
        None => e.message.clone(),
    });
    f.hint = e.hint;
    f
}

/// `berth instance-type ...`
pub async fn instance_type(
    client: &Client,
    out: &Printer,
    cmd: InstanceTypeCommand,
) -> Result<i32, Failure> {
    match cmd {
        InstanceTypeCommand::Apply { file } => {
            let req = ApplyRequest {
                file: file.display().to_string(),
                yaml: read(&file)?,
            };
            let applied: Vec<InstanceTypeView> = client
                .call(Method::PUT, "/api/instance-types", Some(&req))
                .await?;
            out.print(&applied, &IT_COLUMNS)?;
        }
        InstanceTypeCommand::List => out.print(
            &client
                .get::<Vec<InstanceTypeView>>("/api/instance-types")
                .await?,
            &IT_COLUMNS,
        )?,
        InstanceTypeCommand::Show { name } => out.print(
            &client
                .get::<InstanceTypeView>(&format!("/api/instance-types/{}", seg(&name)))
                .await?,
            &IT_COLUMNS,
        )?,
        InstanceTypeCommand::Delete { name } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/api/instance-types/{}", seg(&name)),
                    None::<&()>,
                )
                .await?;
            eprintln!("Deleted instance type {name}.");
        }
    }
    Ok(0)
}

/// `berth compute ...`
pub async fn compute(client: &Client, out: &Printer, cmd: ComputeCommand) -> Result<i32, Failure> {
    match cmd {
        ComputeCommand::Attach {
            kind,
            name,
            file,
            description,
            kubeconfig,
            in_cluster,
            context,
            resource_id,
            namespace,
            create_namespace,
            server_url,
            berth_image,
        } => {
            let mut spec = spec_of(file.as_deref(), name, kind.as_deref(), description)?;
            let (kubeconfig, context) = if spec.kind == ComputeKind::Kubernetes && !in_cluster {
                cluster_access(kubeconfig, context, resource_id.as_deref())?
            } else {
                (kubeconfig, context)
            };
            if kubeconfig.is_some() || in_cluster {
                spec.kubernetes = Some(KubernetesTarget {
                    kubeconfig: kubeconfig
                        .as_deref()
                        .map(read)
                        .transpose()?
                        .unwrap_or_default(),
                    in_cluster,
                    context,
                    namespace,
                    server_url,
                    berth_image,
                });
            }
            let path = format!("/api/computes?create_namespace={create_namespace}");
            out.print(
                &client
                    .call::<ComputeView>(Method::POST, &path, Some(&spec))
                    .await?,
                &COMPUTE_COLUMNS,
            )?;
        }
        ComputeCommand::Show { name } => out.print(
            &client
                .get::<ComputeView>(&format!("/api/computes/{}", seg(&name)))
                .await?,
            &COMPUTE_COLUMNS,
        )?,
        ComputeCommand::List => out.print(
            &client.get::<Vec<ComputeView>>("/api/computes").await?,
            &COMPUTE_COLUMNS,
        )?,
        ComputeCommand::Detach {
            name,
            force,
            yes: _,
        } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/api/computes/{}?force={force}", seg(&name)),
                    None::<&()>,
                )
                .await?;
            eprintln!("Detached compute {name}.");
        }
    }
    Ok(0)
}

/// The compute's spec: its file (with `--name` winning), else the flags.
fn spec_of(
    file: Option<&Path>,
    name: Option<String>,
    kind: Option<&str>,
    description: Option<String>,
) -> Result<ComputeSpec, Failure> {
    let Some(f) = file else {
        return Ok(ComputeSpec {
            name: name.unwrap_or_default(),
            kind: ComputeKind::parse(kind.unwrap_or_default()).map_err(Failure::new)?,
            description,
            capacity: None,
            kubernetes: None,
        });
    };
    let text = read(f)?;
    let mut s =
        ComputeSpec::parse(&Source::new(&f.display().to_string(), &text)).map_err(spec_failure)?;
    if let Some(n) = name {
        s.name = n;
    }
    Ok(s)
}

/// The kubeconfig and context to reach a cluster with: as given, else the default kubeconfig
/// with the context named after the cluster in `--resource-id`, when it has one.
fn cluster_access(
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    resource_id: Option<&str>,
) -> Result<(Option<PathBuf>, Option<String>), Failure> {
    if kubeconfig.is_some() {
        return Ok((kubeconfig, context));
    }
    let found = default_kubeconfig().ok_or_else(|| {
        Failure::new("no kubeconfig to reach the cluster with")
            .hint("pass --kubeconfig <file>, set $KUBECONFIG, or --in-cluster for the server `berth extension create` installed")
    })?;
    let text = read(&found)?;
    let by_id = resource_id
        .and_then(cluster_of)
        .filter(|c| has_context(&text, c));
    Ok((Some(found), context.or(by_id)))
}

/// `$KUBECONFIG` (its first file), else `~/.kube/config`, if it exists.
fn default_kubeconfig() -> Option<std::path::PathBuf> {
    let from_env = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty());
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config"));
    from_env.or(home).filter(|p| p.is_file())
}

/// The cluster name in an Azure resource ID (`.../managedClusters/<name>` or
/// `.../connectedClusters/<name>`).
fn cluster_of(resource_id: &str) -> Option<String> {
    let parts: Vec<&str> = resource_id.trim_end_matches('/').split('/').collect();
    parts
        .windows(2)
        .find(|w| {
            w[0].eq_ignore_ascii_case("managedClusters")
                || w[0].eq_ignore_ascii_case("connectedClusters")
        })
        .map(|w| w[1].to_string())
}

/// True when the kubeconfig names a context `name`.
fn has_context(kubeconfig: &str, name: &str) -> bool {
    serde_saphyr::from_str::<serde_json::Value>(kubeconfig)
        .ok()
        .and_then(|v| v.get("contexts").and_then(|c| c.as_array()).cloned())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
        })
}

/// `berth datastore ...`
pub async fn datastore(
    client: &Client,
    out: &Printer,
    cmd: DatastoreCommand,
) -> Result<i32, Failure> {
    match cmd {
        DatastoreCommand::Create { name, path, file } => {
            let mut spec = match file {
                Some(f) => {
                    let text = read(&f)?;
                    let mut s = DatastoreSpec::parse(&Source::new(&f.display().to_string(), &text))
                        .map_err(spec_failure)?;
                    // A relative path in the file is relative to the file.
                    let DatastoreLocation::Local { path: p } = &mut s.location;
                    if let Some(dir) = f.parent() {
                        *p = dir.join(&*p).to_string_lossy().into_owned();
                    }
                    if let Some(n) = name {
                        s.name = n;
                    }
                    s
                }
                None => DatastoreSpec {
                    name: name.unwrap_or_default(),
                    location: DatastoreLocation::Local {
                        path: path
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    },
                    description: None,
                },
            };
            let DatastoreLocation::Local { path: p } = &mut spec.location;
            let abs = std::path::absolute(&*p)
                .map_err(|e| Failure::new(format!("datastore path `{p}`: {e}")))?;
            *p = abs.to_string_lossy().into_owned();
            out.print(
                &client
                    .call::<DatastoreView>(Method::POST, "/api/datastores", Some(&spec))
                    .await?,
                &DS_COLUMNS,
            )?;
        }
        DatastoreCommand::List => out.print(
            &client.get::<Vec<DatastoreView>>("/api/datastores").await?,
            &DS_COLUMNS,
        )?,
        DatastoreCommand::Show { name } => out.print(
            &client
                .get::<DatastoreView>(&format!("/api/datastores/{}", seg(&name)))
                .await?,
            &DS_COLUMNS,
        )?,
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::{cluster_of, has_context};

    #[test]
    fn the_cluster_name_comes_from_the_resource_id() {
        let id = "/subscriptions/s/resourcegroups/myResourceGroup/providers/Microsoft.ContainerService/managedClusters/myAKSCluster";
        assert_eq!(cluster_of(id).as_deref(), Some("myAKSCluster"));
        assert_eq!(cluster_of("not-an-id"), None);
    }

    #[test]
    fn contexts_are_found_by_name() {
        let k =
            "apiVersion: v1\ncontexts:\n- name: myAKSCluster\n  context: {cluster: c, user: u}\n";
        assert!(has_context(k, "myAKSCluster"));
        assert!(!has_context(k, "other"));
    }
}
