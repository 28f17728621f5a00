//! What goes wrong with a cluster: a request the API server refused or did not answer (with
//! its own words when it gave some), a refusal Berth makes after asking it, or an object Berth
//! could not build. Every message is for the person reading it.

use super::cluster::describe;

/// A cluster error.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A request failed; `what` says what it was for.
    #[error("{what}: {}", describe(.source))]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A request failed, with no more to say than the API server's answer.
    #[error("{}", describe(.0))]
    Kube(#[from] kube::Error),
    /// The kubeconfig (or the pod's own identity) cannot be used.
    #[error("{0}")]
    Config(String),
    /// The cluster is not in a state Berth can work with (a permission, a namespace); the
    /// message says what to do.
    #[error("{0}")]
    Refused(String),
    /// Berth could not build or read an object.
    #[error("{0}")]
    Object(String),
}

/// Wraps a client error with what the request was for.
pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Api { what, source }
}

/// An object that could not be encoded or decoded.
pub fn object(e: impl std::fmt::Display) -> KubeError {
    KubeError::Object(e.to_string())
}
