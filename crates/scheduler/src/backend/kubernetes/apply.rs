//! Server-side apply (field manager `berth`) and deletion of arbitrary manifests, as the
//! extension install uses them: each document's API is found by discovery.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use serde_json::Value;

use super::FIELD_MANAGER;
use super::cluster::describe;
use super::error::KubeError;

/// `Kind/name` (with the namespace when there is one), for messages.
pub fn label(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or("?");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

async fn api_for(client: &Client, doc: &Value) -> Result<(Api<DynamicObject>, String), KubeError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    // A CRD applied a moment ago takes a moment to be served.
    let mut found: Option<(ApiResource, ApiCapabilities)> = None;
    let mut last = String::new();
    for _ in 0..50 {
        match pinned_kind(client, &gvk).await {
            Ok(r) => {
                found = Some(r);
                break;
            }
            Err(e) => {
                last = describe(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let (resource, caps) = found.ok_or_else(|| {
        KubeError::Refused(format!(
            "the cluster does not serve {api_version} {kind}: {last}"
        ))
    })?;
    let name = doc["metadata"]["name"]
        .as_str()
        .ok_or_else(|| KubeError::Object(format!("{} has no name", label(doc))))?
        .to_string();
    let api = match (caps.scope, doc["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// Applies one document; the API server's refusal comes back as its own message.
pub async fn apply(client: &Client, doc: &Value) -> Result<DynamicObject, KubeError> {
    let (api, name) = api_for(client, doc).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(doc))
        .await
        .map_err(super::error::api(label(doc)))
}

/// Reads the live object for a document, if it exists.
pub async fn get(client: &Client, doc: &Value) -> Result<Option<DynamicObject>, KubeError> {
    let (api, name) = api_for(client, doc).await?;
    api.get_opt(&name)
        .await
        .map_err(super::error::api(label(doc)))
}

/// Deletes the object for a document; true when it existed.
pub async fn delete(client: &Client, doc: &Value) -> Result<bool, KubeError> {
    let (api, name) = match api_for(client, doc).await {
        Ok(r) => r,
        // The kind is not served at all (a CRD deleted already): nothing to delete.
        Err(_) => return Ok(false),
    };
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(super::error::api(label(doc))(e)),
    }
}
