//! Kubernetes computes in a Berth built without the `kubernetes` feature: none can be
//! attached, and one stored by a build that had it is shown as not connected.

use berth_core::api::ClusterView;
use berth_core::resources::Resources;
use berth_core::spec::compute::{ComputeKind, ComputeSpec};
use berth_core::spec::instance_type::InstanceType;

use crate::AppState;
use crate::error::ApiError;

fn not_built() -> String {
    "this berth was built without Kubernetes support; build it with the `kubernetes` feature (the default)".into()
}

/// Refuses: there is no Kubernetes client in this build.
pub async fn connect_new(
    _state: &AppState,
    _spec: &ComputeSpec,
    _create_namespace: bool,
) -> Result<(), ApiError> {
    Err(ApiError::BadRequest(not_built()))
}

/// Says why the cluster cannot be read.
pub async fn describe(_state: &AppState, _spec: &ComputeSpec) -> (Resources, ClusterView) {
    let view = ClusterView {
        error: Some(not_built()),
        ..ClusterView::default()
    };
    (Resources::default(), view)
}

/// Refuses: the cluster's InstanceTypes cannot be read.
pub async fn instance_type(
    _state: &AppState,
    _compute: &str,
    _name: &str,
) -> Result<Option<InstanceType>, ApiError> {
    Err(ApiError::BadRequest(not_built()))
}

/// True for a Kubernetes compute.
pub fn is_kubernetes(spec: &ComputeSpec) -> bool {
    spec.kind == ComputeKind::Kubernetes
}

/// Nothing to forget.
pub fn forget(_state: &AppState, _compute: &str) {}
