//! Online endpoints: create with keys, traffic updates, credentials, and the route table the
//! inference router serves.

use berth_core::api::EndpointView;
use berth_core::serving::{DeploymentRecord, EndpointKeys, EndpointRecord, ProvisioningState};
use berth_core::spec::compute::LOCAL_COMPUTE;
use berth_core::spec::endpoint::{AuthMode, EndpointSpec, MirrorTraffic, TrafficSplit};
use berth_core::yaml::Source;
use berth_store::{Kind, StoreError, Stored};
use serde::Serialize;
use time::OffsetDateTime;

use berth_scheduler::serving::controller::ServingEvent;

use crate::AppState;
use crate::error::ApiError;
use crate::services::resources::find_compute;
use crate::services::routes::settled;

fn random_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The view of a stored endpoint.
pub fn view(state: &AppState, s: &Stored<EndpointRecord>) -> EndpointView {
    let spec = &s.value.spec;
    let base = format!("{}/api/v1/endpoint/{}", state.scoring_url, spec.name);
    EndpointView {
        name: spec.name.clone(),
        compute: format!(
            "azureml:{}",
            spec.compute.as_deref().unwrap_or(LOCAL_COMPUTE)
        ),
        auth_mode: spec.auth_mode,
        description: spec.description.clone(),
        tags: spec.tags.clone(),
        traffic: spec.traffic.clone(),
        mirror_traffic: spec.mirror_traffic.clone(),
        scoring_uri: format!("{base}/score"),
        openapi_uri: format!("{base}/swagger.json"),
        provisioning_state: ProvisioningState::Succeeded,
        resource_version: s.resource_version,
        notes: spec.notes.clone(),
    }
}

pub use crate::services::records::endpoint as get;

/// Creates an endpoint from its YAML file.
pub async fn create(
    state: &AppState,
    file: &str,
    yaml: &str,
    set: &[String],
) -> Result<Stored<EndpointRecord>, ApiError> {
    let src = Source::new(file, yaml);
    let mut spec = berth_core::overrides::parse_with_sets(&src, set, EndpointSpec::parse)
        .map_err(ApiError::spec)?;
    let compute = spec
        .compute
        .clone()
        .unwrap_or_else(|| LOCAL_COMPUTE.to_string());
    if find_compute(state, &compute).await?.is_none() {
        return Err(ApiError::spec(
            src.error_near(
                "compute",
                None,
                format!("compute `{compute}` does not exist"),
            )
            .hint(format!(
                "attach it with `berth compute attach --type local --name {compute}`"
            )),
        ));
    }
    // Traffic names deployments, and a new endpoint has none (Azure sets it with update).
    spec.traffic = TrafficSplit::default();
    spec.mirror_traffic = MirrorTraffic::default();
    let record = EndpointRecord {
        spec,
        keys: EndpointKeys {
            primary: random_key(),
            secondary: random_key(),
        },
        created_at: OffsetDateTime::now_utc(),
    };
    match state
        .store
        .insert(Kind::Endpoint, &record.spec.name, None, &record)
        .await
    {
        Ok((v, seq)) => {
            settled(state).await;
            Ok(Stored {
                value: record,
                resource_version: v,
                seq,
            })
        }
        Err(StoreError::AlreadyExists { .. }) => Err(ApiError::AlreadyExists {
            kind: "online endpoint",
            name: record.spec.name,
            hint: Some("endpoint names are unique; `berth online-endpoint show` shows it".into()),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The deployments of an endpoint.
pub async fn deployments_of(
    state: &AppState,
    endpoint: &str,
) -> Result<Vec<Stored<DeploymentRecord>>, ApiError> {
    let all = state
        .store
        .list::<DeploymentRecord>(Kind::Deployment)
        .await?;
    Ok(all
        .into_iter()
        .filter(|d| d.value.spec.endpoint_name == endpoint)
        .collect())
}

/// Sets the traffic split; every named deployment must exist.
pub async fn set_traffic(
    state: &AppState,
    name: &str,
    traffic: TrafficSplit,
) -> Result<Stored<EndpointRecord>, ApiError> {
    set_split(state, name, Some(traffic), None).await
}

/// Sets the traffic split and/or the mirror; every named deployment must exist.
pub async fn set_split(
    state: &AppState,
    name: &str,
    traffic: Option<TrafficSplit>,
    mirror: Option<MirrorTraffic>,
) -> Result<Stored<EndpointRecord>, ApiError> {
    let deployments: Vec<String> = deployments_of(state, name)
        .await?
        .into_iter()
        .map(|d| d.value.spec.name)
        .collect();
    let named = traffic.iter().flat_map(|t| {
        t.weights()
            .iter()
            .map(|(d, w)| (d.clone(), *w))
            .collect::<Vec<_>>()
    });
    let mirrored = mirror
        .iter()
        .filter_map(|m| m.target().map(|(d, w)| (d.to_string(), w)));
    for (d, w) in named.chain(mirrored) {
        let d = &d;
        if w > 0 && !deployments.contains(d) {
            return Err(ApiError::BadRequest(format!(
                "traffic names deployment `{d}`, which endpoint `{name}` does not have (it has: {})",
                if deployments.is_empty() {
                    "none".to_string()
                } else {
                    deployments.join(", ")
                }
            )));
        }
    }
    loop {
        let mut ep = get(state, name).await?;
        if let Some(t) = &traffic {
            ep.value.spec.traffic = t.clone();
        }
        if let Some(m) = &mirror {
            ep.value.spec.mirror_traffic = m.clone();
        }
        match state
            .store
            .update(Kind::Endpoint, name, ep.resource_version, None, &ep.value)
            .await
        {
            Ok(v) => {
                ep.resource_version = v;
                settled(state).await;
                return Ok(ep);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long an `aml_token` lasts.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

/// `get-credentials` for an `aml_token` endpoint, in Azure's shape.
#[derive(Debug, Serialize)]
pub struct AccessToken {
    /// The token.
    #[serde(rename = "accessToken")]
    pub access_token: String,
    /// Always `Bearer`.
    #[serde(rename = "tokenType")]
    pub token_type: &'static str,
    /// When it stops working (RFC 3339).
    #[serde(rename = "expiryTimeUtc")]
    pub expiry_time_utc: String,
    /// When to get a new one (RFC 3339).
    #[serde(rename = "refreshAfterTimeUtc")]
    pub refresh_after_time_utc: String,
}

fn rfc3339(unix: u64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The keys of a `key` endpoint.
pub async fn keys(state: &AppState, name: &str) -> Result<EndpointKeys, ApiError> {
    let ep = get(state, name).await?;
    if ep.value.spec.auth_mode == AuthMode::AmlToken {
        return Err(ApiError::BadRequest(format!(
            "endpoint `{name}` uses aml_token, not keys; its credential is a token (get-credentials returns one)"
        )));
    }
    Ok(ep.value.keys)
}

/// A fresh token for an `aml_token` endpoint.
pub async fn token(state: &AppState, name: &str) -> Result<AccessToken, ApiError> {
    let ep = get(state, name).await?;
    if ep.value.spec.auth_mode != AuthMode::AmlToken {
        return Err(ApiError::BadRequest(format!(
            "endpoint `{name}` uses keys, not tokens; get-credentials returns its keys"
        )));
    }
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let expiry = now + TOKEN_LIFETIME_SECS;
    Ok(AccessToken {
        access_token: crate::auth::endpoint_token_key(&state.token_secret, &ep.value)
            .sign(name, expiry),
        token_type: "Bearer",
        expiry_time_utc: rfc3339(expiry),
        refresh_after_time_utc: rfc3339(now + TOKEN_LIFETIME_SECS / 2),
    })
}

/// Makes a new primary or secondary key; the other keeps working meanwhile.
pub async fn regenerate_key(
    state: &AppState,
    name: &str,
    key_type: &str,
) -> Result<EndpointKeys, ApiError> {
    let mut ep = get(state, name).await?;
    if ep.value.spec.auth_mode == AuthMode::AmlToken {
        return Err(ApiError::BadRequest(format!(
            "endpoint `{name}` uses aml_token and has no keys; tokens expire by themselves"
        )));
    }
    match key_type.to_ascii_lowercase().as_str() {
        "primary" => ep.value.keys.primary = random_key(),
        "secondary" => ep.value.keys.secondary = random_key(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "`{other}` is not a key type; use primary or secondary"
            )));
        }
    }
    state
        .store
        .update(Kind::Endpoint, name, ep.resource_version, None, &ep.value)
        .await?;
    settled(state).await;
    Ok(ep.value.keys)
}

/// Deletes an endpoint and its deployments.
pub async fn delete(state: &AppState, name: &str) -> Result<(), ApiError> {
    get(state, name).await?;
    for d in deployments_of(state, name).await? {
        crate::services::deployments::delete(state, name, &d.value.spec.name, true).await?;
    }
    state.store.delete(Kind::Endpoint, name).await?;
    settled(state).await;
    Ok(())
}

/// Does what the serving controller asks of the server: routes, traffic and metrics.
pub async fn serve_events(
    state: &AppState,
    mut events: tokio::sync::mpsc::UnboundedReceiver<ServingEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ServingEvent::RoutesChanged => {}
            ServingEvent::GiveAllTraffic {
                endpoint,
                deployment,
            } => {
                if let Ok(t) =
                    TrafficSplit::try_from(std::collections::BTreeMap::from([(deployment, 100)]))
                {
                    let _ = set_traffic(state, &endpoint, t).await;
                }
            }
            ServingEvent::Scaled {
                endpoint,
                deployment,
                up,
            } => {
                state.router.metrics.scaled(&endpoint, &deployment, up);
                continue;
            }
        }
        state.route_feed.nudge();
    }
}
