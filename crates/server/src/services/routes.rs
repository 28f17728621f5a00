//! The routes the inference router serves (and publishes to standalone routers): rebuilt from
//! the stored endpoints and deployments and the ready replicas whenever one of them changes.
//! One task follows the store's feed ([`follow`]); a request that wrote an endpoint or a
//! deployment waits for the routes to include it ([`settled`]) before it answers.

use berth_core::serving::{
    DeploymentRecord, DeploymentRoutes, DeploymentState, EndpointRecord, EndpointRoutes, RoutesDoc,
};
use berth_core::spec::endpoint::AuthMode;
use berth_store::Kind;

use crate::AppState;

/// Where the routes stand: the endpoint and deployment write counts they were built from, and
/// a nudge for changes the store does not see (a cluster's replicas becoming ready).
#[derive(Debug, Default)]
pub struct RouteFeed {
    built: tokio::sync::watch::Sender<(u64, u64)>,
    nudge: tokio::sync::watch::Sender<u64>,
}

impl RouteFeed {
    /// Asks for the routes to be rebuilt.
    pub fn nudge(&self) {
        self.nudge.send_modify(|n| *n += 1);
    }
}

/// Keeps the routes current until the store goes away: rebuilt whenever an endpoint or a
/// deployment is written, a local replica becomes ready or goes, or someone nudges.
pub async fn follow(state: AppState) {
    let mut endpoints = state.store.watch(Kind::Endpoint);
    let mut deployments = state.store.watch(Kind::Deployment);
    let mut replicas = state.serving.backends().local.replicas().subscribe();
    let mut nudges = state.route_feed.nudge.subscribe();
    loop {
        // Counted before reading: the table built includes at least these writes.
        let seen = (
            *endpoints.borrow_and_update(),
            *deployments.borrow_and_update(),
        );
        replicas.borrow_and_update();
        nudges.borrow_and_update();
        refresh_routes(&state).await;
        state.route_feed.built.send_replace(seen);
        let changed = tokio::select! {
            r = endpoints.changed() => r.is_ok(),
            r = deployments.changed() => r.is_ok(),
            r = replicas.changed() => r.is_ok(),
            r = nudges.changed() => r.is_ok(),
        };
        if !changed {
            return;
        }
    }
}

/// Waits (up to 5 s) until the routes include every endpoint and deployment written so far.
pub async fn settled(state: &AppState) {
    let want = (
        *state.store.watch(Kind::Endpoint).borrow(),
        *state.store.watch(Kind::Deployment).borrow(),
    );
    let mut built = state.route_feed.built.subscribe();
    let caught_up = built.wait_for(|b| b.0 >= want.0 && b.1 >= want.1);
    if tokio::time::timeout(std::time::Duration::from_secs(5), caught_up)
        .await
        .is_err()
    {
        tracing::warn!("the routes did not catch up with the store within 5 s");
    }
}

/// Rebuilds the router's table from the store and the ready replicas.
async fn refresh_routes(state: &AppState) {
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
            token_secret: token
                .then(|| crate::auth::endpoint_token_secret(&state.token_secret, &ep)),
            traffic: ep.spec.traffic.clone(),
            mirror_traffic: ep.spec.mirror_traffic.clone(),
            deployments: routes,
        });
    }
    state.router.update(berth_router::table_from_doc(&doc));
    state.routes.send_replace(std::sync::Arc::new(doc));
}
