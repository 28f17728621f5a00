//! Routes that carry their own documentation: each is added to the axum router and to the
//! list the OpenAPI document is made from, in one call, so no route goes undocumented.

use axum::Router;
use axum::routing::MethodRouter;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Open,
    /// The API token.
    Token,
    /// A job's or revision's own token (what a Kubernetes pod holds).
    PodToken,
    /// The router token (or the API token).
    RouterToken,
    /// The API token, or a job's own MLflow token (its runs only).
    TrackingToken,
}

/// One documented operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// `get`, `post`, `put`, `patch` or `delete`.
    pub method: &'static str,
    /// The axum path (`{name}`, `{*path}`).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// The request body's schema, in the document's components.
    pub body: Option<&'static str>,
    /// Who may call it.
    pub access: Access,
}

/// A router and the operations it serves.
pub struct Documented<S> {
    /// The routes.
    pub router: Router<S>,
    /// Their documentation, in the order added.
    pub ops: Vec<Op>,
    access: Access,
}

impl<S: Clone + Send + Sync + 'static> Documented<S> {
    /// An empty set of routes callable with `access`.
    pub fn new(access: Access) -> Self {
        Documented {
            router: Router::new(),
            ops: Vec::new(),
            access,
        }
    }

    /// Serves `handler` (a method router for `method` alone) at `path`.
    pub fn at(
        mut self,
        method: &'static str,
        path: &'static str,
        summary: &'static str,
        handler: MethodRouter<S>,
    ) -> Self {
        self.router = self.router.route(path, handler);
        self.ops.push(Op {
            method,
            path,
            summary,
            body: None,
            access: self.access,
        });
        self
    }

    /// The last operation added takes a JSON body of component schema `schema`.
    pub fn body(mut self, schema: &'static str) -> Self {
        if let Some(op) = self.ops.last_mut() {
            op.body = Some(schema);
        }
        self
    }

    /// Both sets of routes.
    pub fn merge(mut self, other: Documented<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// The routes with `f` applied to the router (a middleware layer).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }
}
