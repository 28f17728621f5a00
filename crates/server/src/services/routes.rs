//! The routes the inference router serves (and publishes to standalone routers): rebuilt from
//! the stored endpoints and deployments and the ready replicas whenever one of them changes.

use berth_core::serving::{
    DeploymentRecord, DeploymentRoutes, DeploymentState, EndpointRecord, EndpointRoutes, RoutesDoc,
};
use berth_core::spec::endpoint::AuthMode;
use berth_store::Kind;

use crate::AppState;

/// Rebuilds the router's table from the store and the ready replicas.
pub async fn refresh_routes(state: &AppState) {
    let (Ok(endpoints), Ok(deployments)) = (
        state.store.list::<EndpointRecord>(Kind::Endpoint).await,
        state.store.list::<DeploymentRecord>(Kind::Deployment).await,
    ) else {
        tracing::warn!("cannot read endpoints to refresh routes");
        return;
    };
    let mut doc = RoutesDoc {
        epoch: state.routes.borrow().epoch,
        version: state.routes.borrow().version + 1,
        endpoints: Vec::new(),
    };
    for ep in endpoints {
        let ep = ep.value;
        let routes = deployments
            .iter()
            .filter(|d| d.value.spec.endpoint_name == ep.spec.name)
            .map(|d| {
                let d = &d.value;
                let key = berth_core::serving::deployment_key(&ep.spec.name, &d.spec.name);
                let replicas = if d.state == DeploymentState::Deleting {
                    Vec::new()
                } else {
                    state.serving.backends().ready(&key)
                };
                DeploymentRoutes {
                    name: d.spec.name.clone(),
                    replicas,
                    request_settings: d.spec.request_settings,
                }
            })
            .collect();
        let token = ep.spec.auth_mode == AuthMode::AmlToken;
        doc.endpoints.push(EndpointRoutes {
            name: ep.spec.name.clone(),
            auth_mode: ep.spec.auth_mode,
            keys: if token {
                Vec::new()
            } else {
                vec![ep.keys.primary.clone(), ep.keys.secondary.clone()]
            },
            token_secret: token.then(|| state.token_secret.to_string()),
            traffic: ep.spec.traffic.clone(),
            mirror_traffic: ep.spec.mirror_traffic.clone(),
            deployments: routes,
        });
    }
    state.router.update(berth_router::table_from_doc(&doc));
    state.routes.send_replace(std::sync::Arc::new(doc));
}
