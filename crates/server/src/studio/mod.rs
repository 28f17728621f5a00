//! The web studio on the API listener: server-rendered HTML (maud), one small script of our
//! own and uPlot for the charts, all embedded in the binary. Lists work without script;
//! charts and the live log need it. Sign-in is the server's API token (see `session`).

mod catalog;
mod compute;
mod data;
mod jobs;
mod layout;
mod outputs;
mod serving;
mod session;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;

/// Every studio route (and `/`, which leads to it).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/studio/jobs") }))
        .route("/studio", get(|| async { Redirect::to("/studio/jobs") }))
        .route("/studio/", get(|| async { Redirect::to("/studio/jobs") }))
        .route(
            "/studio/login",
            get(session::login_form).post(session::login),
        )
        .route("/studio/logout", post(session::logout))
        .route("/studio/jobs", get(jobs::list))
        .route("/studio/jobs/{name}", get(jobs::show))
        .route("/studio/jobs/{name}/cancel", post(jobs::cancel))
        .route("/studio/jobs/{name}/log", get(jobs::log_events))
        .route("/studio/jobs/{name}/log.txt", get(jobs::log_text))
        .route(
            "/studio/jobs/{name}/outputs/{output}/{*path}",
            get(outputs::download),
        )
        .route("/studio/endpoints", get(serving::list))
        .route("/studio/computes", get(compute::list))
        .route("/studio/assets-list", get(catalog::list))
        .route("/studio/data/metrics", get(data::metrics))
        .route("/studio/assets/{file}", get(asset))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
}

/// An HTML page, never cached (it holds the session's form token).
pub fn page(markup: maud::Markup) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(markup.into_string()),
    )
        .into_response()
}

/// A page that could not be made: what went wrong, in a sentence.
pub fn failed(message: &str) -> Response {
    let status = if message.contains("does not exist") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = layout::bare(
        "Error",
        maud::html! { main { h1 { "That did not work" } p role="alert" { (message) } p { a href="/studio/jobs" { "Back to the jobs" } } } },
    );
    (status, page(body)).into_response()
}

/// A path segment, percent-encoded.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "studio.css",
        "text/css",
        include_bytes!("assets/studio.css"),
    ),
    (
        "studio.js",
        "text/javascript",
        include_bytes!("assets/studio.js"),
    ),
    (
        "uPlot.min.css",
        "text/css",
        include_bytes!("assets/uPlot.min.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
];

/// `GET /studio/assets/{file}`: the embedded stylesheets and scripts (no session needed).
async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
